// inotify for the home's watches on what a session has stat'ed (Watches.swift).
#include "CShim.h"

#include <stddef.h>
#include <sys/inotify.h>

_Static_assert(sizeof(struct inotify_event) == CSHIM_INOTIFY_EVENT_SIZE, "struct inotify_event");
_Static_assert(CSHIM_IN_WATCHED == (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
                                    | IN_DELETE_SELF | IN_MOVE_SELF), "CSHIM_IN_WATCHED");
_Static_assert(CSHIM_IN_DELETE_SELF == IN_DELETE_SELF && CSHIM_IN_MOVE_SELF == IN_MOVE_SELF, "IN_*_SELF");
_Static_assert(CSHIM_IN_DONT_FOLLOW == IN_DONT_FOLLOW, "IN_DONT_FOLLOW");
_Static_assert(CSHIM_IN_Q_OVERFLOW == IN_Q_OVERFLOW && CSHIM_IN_IGNORED == IN_IGNORED && CSHIM_IN_ISDIR == IN_ISDIR,
               "IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR");

int cshim_inotify_open(void) { return inotify_init1(IN_NONBLOCK | IN_CLOEXEC); }

int cshim_inotify_add(int fd, const char *path, uint32_t mask) { return inotify_add_watch(fd, path, mask); }

int cshim_inotify_remove(int fd, int wd) { return inotify_rm_watch(fd, wd); }
