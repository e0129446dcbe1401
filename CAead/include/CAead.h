#ifndef CAEAD_H
#define CAEAD_H

// The frame AEAD: BoringSSL's EVP_AEAD interface, from the copy that
// swift-crypto already links into every Tether binary (its C symbols carry
// the prefix CCryptoBoringSSL_). One context per direction keeps the key
// schedule; frames are sealed and opened without allocation, in place if
// the caller likes. swift-crypto's Swift API would allocate and set the key
// up again for every frame (measured: forward-bench, sealing).

#include <stddef.h>
#include <stdint.h>

typedef struct caead caead;

enum {
    CAEAD_CHACHA20_POLY1305 = 0,
    CAEAD_AES_256_GCM = 1,
};

/// A context for `cipher` with the 32-byte `key`; NULL on failure.
caead *caead_new(int cipher, const uint8_t *key);
void caead_free(caead *ctx);

/// Encrypts `len` bytes from `in` to `out` (`out` == `in`, or not
/// overlapping), authenticating `aad` too; writes the 16-byte tag to `tag`.
/// 0, or -1.
int caead_seal(const caead *ctx, const uint8_t *nonce12, const uint8_t *aad, size_t aadlen,
               const uint8_t *in, uint8_t *out, size_t len, uint8_t *tag);

/// Checks and decrypts `len` bytes from `in` to `out` (same rule) with the
/// 16-byte `tag`. 0, or -1 when the frame does not authenticate (then `out`
/// holds nothing usable).
int caead_open(const caead *ctx, const uint8_t *nonce12, const uint8_t *aad, size_t aadlen,
               const uint8_t *in, uint8_t *out, size_t len, const uint8_t *tag);

#endif
