/* jwt_keyset.h — inside the JWT verifier: the loaded key set that jwt_keys.c builds and
 * jwt_verify.c reads. Not for other components (they use jwt_auth.h). */
#ifndef TASKER_JWT_KEYSET_H
#define TASKER_JWT_KEYSET_H

#include "jwt_auth.h"

#include <openssl/evp.h>

/* One key: a public key (RS256, ES256) or a secret (HS256), never both. */
struct jwt_key {
    char kid[JWT_KID_MAX];   /* "" = none: tried for tokens of its algorithm that name no kid */
    enum jwt_alg alg;
    EVP_PKEY *pkey;          /* RS256, ES256 */
    unsigned char *secret;   /* HS256; cleared before it is freed */
    size_t secret_len;
};

struct jwt_keyset {
    struct jwt_key keys[JWT_KEYS_MAX];
    int n;
};

#endif
