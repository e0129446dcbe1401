#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H
#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer's driver (command line, corpus, mutation loop) over
/// `test_one_input`. SwiftPM renames a Swift executable's entry point to
/// MODULE_main, so the fuzz targets cannot use libFuzzer's own main: each
/// defines MODULE_main and calls this.
int tether_fuzz_main(int argc, char **argv, int (*test_one_input)(const uint8_t *data, size_t size));

#endif
