/* fuzz_jwt.c — fuzz target: the JWT verifier. The input is verified twice: as a raw token (shape,
 * base64url, header JSON, key choice, signatures), and as "HEADER-JSON\nPAYLOAD-JSON" that this
 * target encodes and signs with the HS256 secret, so that the claim checks behind the signature
 * see arbitrary JSON too. Invariants: a raw token never verifies (the fuzzer holds no key); a
 * verified identity has a printable subject; every answer is a known reason. */
#include "fuzz.h"

#include "jwt_auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);

#define SECRET "fuzz-secret-0123456789abcdef0123456789"

static struct jwt_keyset *ks;
static const struct jwt_policy policy = {.issuer = "iss", .permissions_claim = "permissions", .leeway_secs = 5};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[300];
    ks = jwt_keyset_load(&(struct jwt_sources){.hs256_secret = SECRET}, err, sizeof err);
    if (!ks)
        abort();
    return 0;
}

static size_t b64url(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        size_t n = len - i >= 3 ? 4 : len - i + 1;
        for (size_t k = 0; k < n; k++)
            out[o++] = abc[(v >> (18 - 6 * k)) & 63];
    }
    out[o] = '\0';
    return o;
}

static void check(enum jwt_error e, const struct jwt_identity *id)
{
    FUZZ_CHECK((unsigned)e < JWT_E_COUNT);
    if (e == JWT_E_OK) {
        size_t n = strlen(id->sub);
        FUZZ_CHECK(n > 0 && n < JWT_SUB_MAX);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(id->sub[i] > ' ' && id->sub[i] < 0x7f);
        FUZZ_CHECK(id->alg == JWT_HS256);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jwt_identity id;
    enum jwt_error e = jwt_verify(ks, &policy, (const char *)data, size, 1700000000, &id);
    check(e, &id);
    FUZZ_CHECK(e != JWT_E_OK); /* a forgery */
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl || size > 6000)
        return 0;
    char *tok = malloc(2 * size + 200);
    if (!tok)
        abort();
    size_t n = b64url(data, (size_t)(nl - data), tok);
    tok[n++] = '.';
    n += b64url(nl + 1, size - (size_t)(nl - data) - 1, tok + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, n, mac, &maclen);
    tok[n++] = '.';
    n += b64url(mac, maclen, tok + n);
    check(jwt_verify(ks, &policy, tok, n, 1700000000, &id), &id);
    free(tok);
    return 0;
}
