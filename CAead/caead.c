#include "CAead.h"

// BoringSSL's AEAD API (include/openssl/aead.h), as swift-crypto's copy
// exports it. Declared here because that copy is not a product of its
// package; the integration tests check every sealed frame against an
// independent implementation (Python's cryptography), so a change of these
// symbols cannot go unnoticed.
typedef struct evp_aead_st EVP_AEAD;
typedef struct evp_aead_ctx_st EVP_AEAD_CTX;
const EVP_AEAD *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);
const EVP_AEAD *CCryptoBoringSSL_EVP_aead_chacha20_poly1305(void);
EVP_AEAD_CTX *CCryptoBoringSSL_EVP_AEAD_CTX_new(const EVP_AEAD *aead, const uint8_t *key, size_t key_len,
                                                size_t tag_len);
void CCryptoBoringSSL_EVP_AEAD_CTX_free(EVP_AEAD_CTX *ctx);
int CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter(const EVP_AEAD_CTX *ctx, uint8_t *out, uint8_t *out_tag,
                                               size_t *out_tag_len, size_t max_out_tag_len, const uint8_t *nonce,
                                               size_t nonce_len, const uint8_t *in, size_t in_len,
                                               const uint8_t *extra_in, size_t extra_in_len, const uint8_t *ad,
                                               size_t ad_len);
int CCryptoBoringSSL_EVP_AEAD_CTX_open_gather(const EVP_AEAD_CTX *ctx, uint8_t *out, const uint8_t *nonce,
                                              size_t nonce_len, const uint8_t *in, size_t in_len,
                                              const uint8_t *in_tag, size_t in_tag_len, const uint8_t *ad,
                                              size_t ad_len);

caead *caead_new(int cipher, const uint8_t *key)
{
    const EVP_AEAD *aead = cipher == CAEAD_AES_256_GCM ? CCryptoBoringSSL_EVP_aead_aes_256_gcm()
                                                       : CCryptoBoringSSL_EVP_aead_chacha20_poly1305();
    // The context is the only allocation; it holds the key schedule.
    EVP_AEAD_CTX *ctx = CCryptoBoringSSL_EVP_AEAD_CTX_new(aead, key, 32, 16);
    if (ctx == NULL)
        return NULL;
    // The opaque caead is the context itself: no wrapper to allocate.
    return (caead *)ctx;
}

void caead_free(caead *a)
{
    if (a != NULL)
        CCryptoBoringSSL_EVP_AEAD_CTX_free((EVP_AEAD_CTX *)a);
}

int caead_seal(const caead *a, const uint8_t *nonce12, const uint8_t *aad, size_t aadlen,
               const uint8_t *in, uint8_t *out, size_t len, uint8_t *tag)
{
    size_t tag_len = 0;
    int ok = CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter((const EVP_AEAD_CTX *)a, out, tag, &tag_len, 16, nonce12, 12,
                                                        in, len, NULL, 0, aad, aadlen);
    return ok == 1 && tag_len == 16 ? 0 : -1;
}

int caead_open(const caead *a, const uint8_t *nonce12, const uint8_t *aad, size_t aadlen,
               const uint8_t *in, uint8_t *out, size_t len, const uint8_t *tag)
{
    int ok = CCryptoBoringSSL_EVP_AEAD_CTX_open_gather((const EVP_AEAD_CTX *)a, out, nonce12, 12, in, len, tag, 16,
                                                       aad, aadlen);
    return ok == 1 ? 0 : -1;
}
