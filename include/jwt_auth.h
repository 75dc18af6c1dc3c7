/* jwt_auth.h — JWT bearer tokens of the HTTP API: the verification keys (PEM files, a JWKS file, an
 * HS256 secret) and the verifier. OpenSSL (libcrypto) directly; the key decides the algorithm. */
#ifndef TASKER_JWT_AUTH_H
#define TASKER_JWT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* The algorithms we verify. Each key has exactly one: an RSA key (2048 bits or more) verifies
 * RS256, a P-256 key ES256, the configured secret HS256. A token's "alg" only selects among keys
 * of that algorithm; it never turns a key into another algorithm's key. */
enum jwt_alg { JWT_RS256, JWT_ES256, JWT_HS256, JWT_ALG_COUNT };

#define JWT_TOKEN_MAX 8192        /* longest token accepted (bytes) */
#define JWT_KID_MAX 129           /* 128 bytes */
#define JWT_SUB_MAX 129           /* 128 bytes of printable ASCII other than space */
#define JWT_KEYS_MAX 64           /* keys in one key set */
#define JWT_HS256_SECRET_MIN 32   /* bytes: RFC 7518 §3.2, a key as long as the hash */
#define JWT_KEY_FILE_MAX (1024 * 1024)
#define JWT_RSA_BITS_MIN 2048

/* Why a token was refused (JWT_OK: it was not). jwt_error_reason gives a stable snake_case name
 * (the "reason" of 401 bodies), jwt_error_text a sentence for humans. */
#define JWT_ERRORS(X)                                                                              \
    X(OK, "ok", "valid")                                                                           \
    X(MALFORMED, "malformed", "the token is not a well-formed JWT (header.payload.signature)")     \
    X(TOO_LONG, "too_long", "the token is longer than 8192 bytes")                                 \
    X(ALGORITHM, "algorithm", "the token's algorithm is not one this server has a key for")        \
    X(UNKNOWN_KEY, "unknown_key", "no configured key has the token's key id (kid)")                \
    X(SIGNATURE, "signature", "the token's signature does not verify")                             \
    X(EXPIRED, "expired", "the token has expired (exp)")                                           \
    X(NO_EXPIRY, "no_expiry", "the token has no expiry (exp), which this server requires")         \
    X(NOT_YET_VALID, "not_yet_valid", "the token is not valid yet (nbf)")                          \
    X(ISSUER, "issuer", "the token's issuer (iss) is not the one this server accepts")             \
    X(AUDIENCE, "audience", "the token's audience (aud) does not include this server")             \
    X(SUBJECT, "subject", "the token has no usable subject (sub: 1 to 128 printable ASCII bytes)") \
    X(PERMISSIONS, "permissions", "the token's permissions claim is not an array of strings")      \
    X(INTERNAL, "internal", "the token could not be checked (out of memory)")

enum jwt_error {
#define JWT_ENUM(name, reason, text) JWT_E_##name,
    JWT_ERRORS(JWT_ENUM)
#undef JWT_ENUM
    JWT_E_COUNT
};

const char *jwt_error_reason(enum jwt_error e);
const char *jwt_error_text(enum jwt_error e);
const char *jwt_alg_name(enum jwt_alg a);

/* Where the keys come from (the web.auth.jwt.* keys); NULL or "" = none. public_keys: PEM files
 * separated by white space, each `[KID=]PATH` (a public key or a certificate); jwks_file: a JSON
 * Web Key Set (RSA and P-256 EC keys; symmetric keys in it are refused); hs256_secret: the shared
 * secret's bytes, at least JWT_HS256_SECRET_MIN. */
struct jwt_sources {
    const char *public_keys;
    const char *jwks_file;
    const char *hs256_secret;
};

/* A loaded key set: immutable once loaded, owned by whoever loaded it. */
struct jwt_keyset;

/* jwt_keyset_load: every key of src. NULL on error, with err naming the file (or the secret, never
 * its bytes) and why: unreadable, not a supported public key, a small RSA key, a malformed JWKS, a
 * JWKS without one usable key, a short secret. An empty src is an empty set. */
struct jwt_keyset *jwt_keyset_load(const struct jwt_sources *src, char *err, size_t errlen)
    __attribute__((warn_unused_result));

void jwt_keyset_free(struct jwt_keyset *ks);

/* jwt_keyset_count: keys in the set (0 for NULL); jwt_keyset_algs: bit (1u << alg) per algorithm
 * some key has. */
int jwt_keyset_count(const struct jwt_keyset *ks);
unsigned jwt_keyset_algs(const struct jwt_keyset *ks);

/* What a token must satisfy besides its signature. issuer, audience: "" or NULL = not checked,
 * but a token that names an audience is then refused (RFC 7519 §4.1.3: we are in no audience).
 * permissions_claim: the claim holding the grants (an array of permission strings, or one string
 * of them separated by spaces, as OAuth's "scope"); strings that name no permission grant nothing.
 * leeway_secs: clock skew allowed on exp and nbf. */
struct jwt_policy {
    const char *issuer;
    const char *audience;
    const char *permissions_claim;
    int leeway_secs;
};

/* Who a valid token speaks for. */
struct jwt_identity {
    char sub[JWT_SUB_MAX];
    enum jwt_alg alg;
    unsigned grants;      /* http_auth.h bits */
    long long exp;        /* seconds since the epoch */
};

/* jwt_verify: check token (len bytes, not necessarily NUL-terminated) against ks and p at time now
 * (seconds since the epoch). In this order: shape and size, header (a JSON object, "alg" among the
 * set's algorithms, no "crit"), key by "kid" (a kid names one key; without one, every key of the
 * algorithm is tried), signature, and only then the claims: exp (required), nbf, iss, aud, sub,
 * permissions. Nothing of the token is trusted before its signature verifies. JWT_E_OK fills id. */
enum jwt_error jwt_verify(const struct jwt_keyset *ks, const struct jwt_policy *p, const char *token, size_t len,
                          long long now, struct jwt_identity *id);

/* jwt_b64url_decode: strict base64url without padding (RFC 7515 §2): only [A-Za-z0-9_-], no
 * length of 1 mod 4, unused bits zero. Writes at most outlen bytes; returns the length or -1. */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outlen);

#endif
