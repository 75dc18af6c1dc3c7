/* jwt_keys.c — the JWT verification keys: PEM public keys or certificates, a JWKS file, an HS256
 * secret. Each key gets its one algorithm here, from what the key is; errors name the file. */
#include "jwt_keyset.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const alg_names[JWT_ALG_COUNT] = {[JWT_RS256] = "RS256", [JWT_ES256] = "ES256",
                                                     [JWT_HS256] = "HS256"};

const char *jwt_alg_name(enum jwt_alg a)
{
    return (unsigned)a < JWT_ALG_COUNT ? alg_names[a] : "?";
}

/* ---- base64url -------------------------------------------------------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outlen)
{
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > outlen)
        return -1;
    unsigned long acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1ul << bits) - 1;
        }
    }
    /* Left-over bits must be zero: else two texts decode alike and the signature is malleable. */
    if (acc != 0)
        return -1;
    return (long)o;
}

/* ---- files ------------------------------------------------------------------------------------ */

/* read_small_file: a regular file of at most JWT_KEY_FILE_MAX bytes, NUL-terminated (caller frees).
 * NULL with err set otherwise. */
static char *read_small_file(const char *path, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
    } else if (st.st_size > JWT_KEY_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, JWT_KEY_FILE_MAX);
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        snprintf(err, errlen, "%s: out of memory", path);
    } else {
        size_t got = 0;
        ssize_t n = 1;
        while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
            got += (size_t)n;
        if (n < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            free(buf);
            buf = NULL;
        } else {
            buf[got] = '\0';
            *len = got;
        }
    }
    close(fd);
    return buf;
}

/* ---- keys ------------------------------------------------------------------------------------- */

static void key_clear(struct jwt_key *k)
{
    EVP_PKEY_free(k->pkey);
    if (k->secret)
        OPENSSL_clear_free(k->secret, k->secret_len);
    memset(k, 0, sizeof *k);
}

void jwt_keyset_free(struct jwt_keyset *ks)
{
    if (!ks)
        return;
    for (int i = 0; i < ks->n; i++)
        key_clear(&ks->keys[i]);
    free(ks);
}

int jwt_keyset_count(const struct jwt_keyset *ks)
{
    return ks ? ks->n : 0;
}

unsigned jwt_keyset_algs(const struct jwt_keyset *ks)
{
    unsigned bits = 0;
    for (int i = 0; ks && i < ks->n; i++)
        bits |= 1u << ks->keys[i].alg;
    return bits;
}

/* kid_ok: a key id we can print and compare: 1..128 bytes of printable ASCII. */
static bool kid_ok(const char *kid, size_t len)
{
    if (len == 0 || len >= JWT_KID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)kid[i] < 0x21 || (unsigned char)kid[i] > 0x7e)
            return false;
    return true;
}

/* add_key: take pkey (or secret) into ks under kid; refuses a second key with the same kid, since
 * a token naming it would then pick a key by chance. Frees pkey on failure. */
static bool add_key(struct jwt_keyset *ks, const char *kid, enum jwt_alg alg, EVP_PKEY *pkey, const char *what,
                    char *err, size_t errlen)
{
    if (ks->n == JWT_KEYS_MAX) {
        snprintf(err, errlen, "%s: more than %d JWT keys", what, JWT_KEYS_MAX);
        EVP_PKEY_free(pkey);
        return false;
    }
    for (int i = 0; kid[0] && i < ks->n; i++) {
        if (strcmp(ks->keys[i].kid, kid) == 0) {
            snprintf(err, errlen, "%s: the key id \"%s\" is used twice", what, kid);
            EVP_PKEY_free(pkey);
            return false;
        }
    }
    struct jwt_key *k = &ks->keys[ks->n++];
    memset(k, 0, sizeof *k);
    snprintf(k->kid, sizeof k->kid, "%s", kid);
    k->alg = alg;
    k->pkey = pkey;
    return true;
}

/* classify: the one algorithm a public key verifies, or false (err says why): RSA of at least
 * 2048 bits → RS256; EC on P-256 with a valid point → ES256; anything else is refused. */
static bool classify(EVP_PKEY *pkey, const char *what, enum jwt_alg *alg, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < JWT_RSA_BITS_MIN) {
            snprintf(err, errlen, "%s: an RSA key of %d bits; at least %d are required", what, bits, JWT_RSA_BITS_MIN);
            return false;
        }
        *alg = JWT_RS256;
        return true;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = "";
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) ||
            strcmp(group, "prime256v1") != 0) {
            snprintf(err, errlen, "%s: an EC key on curve %s; ES256 needs P-256 (prime256v1)", what,
                     group[0] ? group : "(unknown)");
            return false;
        }
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        bool ok = ctx && EVP_PKEY_public_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);
        if (!ok) {
            snprintf(err, errlen, "%s: the EC public key is not a valid point of P-256", what);
            return false;
        }
        *alg = JWT_ES256;
        return true;
    }
    snprintf(err, errlen, "%s: a %s key; only RSA (RS256) and P-256 EC (ES256) keys are supported", what,
             EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "unknown");
    return false;
}

/* load_pem: one `[KID=]PATH` entry of public_keys. */
static bool load_pem(struct jwt_keyset *ks, const char *entry, size_t len, char *err, size_t errlen)
{
    char kid[JWT_KID_MAX] = "", path[1024];
    const char *eq = memchr(entry, '=', len);
    const char *p = entry;
    if (eq) {
        if (!kid_ok(entry, (size_t)(eq - entry))) {
            snprintf(err, errlen, "web.auth.jwt.public_keys: the key id before '=' in \"%.*s\" must be 1 to %d "
                                  "printable characters", (int)(len > 200 ? 200 : len), entry, JWT_KID_MAX - 1);
            return false;
        }
        memcpy(kid, entry, (size_t)(eq - entry));
        kid[eq - entry] = '\0';
        p = eq + 1;
    }
    size_t plen = (size_t)(entry + len - p);
    if (plen == 0 || plen >= sizeof path) {
        snprintf(err, errlen, "web.auth.jwt.public_keys: an empty or over-long file name");
        return false;
    }
    memcpy(path, p, plen);
    path[plen] = '\0';
    size_t n;
    char *text = read_small_file(path, &n, err, errlen);
    if (!text)
        return false;
    BIO *bio = BIO_new_mem_buf(text, (int)n);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    if (!pkey && bio) {
        /* not a PUBLIC KEY block: a certificate's key will do */
        (void)BIO_reset(bio);
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        pkey = cert ? X509_get_pubkey(cert) : NULL;
        X509_free(cert);
    }
    BIO_free(bio);
    free(text);
    if (!pkey) {
        snprintf(err, errlen, "%s: no PEM public key (BEGIN PUBLIC KEY) or certificate in it", path);
        return false;
    }
    enum jwt_alg alg;
    if (!classify(pkey, path, &alg, err, errlen)) {
        EVP_PKEY_free(pkey);
        return false;
    }
    return add_key(ks, kid, alg, pkey, path, err, errlen);
}

/* b64_member: obj[name], base64url-decoded into a new buffer of *len bytes (caller frees). */
static unsigned char *b64_member(json_t *obj, const char *name, size_t *len)
{
    const char *s = json_string_value(json_object_get(obj, name));
    if (!s)
        return NULL;
    size_t slen = strlen(s);
    unsigned char *buf = malloc(slen + 1);
    long n = buf ? jwt_b64url_decode(s, slen, buf, slen + 1) : -1;
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

/* pkey_from_params: a public key of type name from the parameters bld holds. */
static EVP_PKEY *pkey_from_params(const char *name, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, name, NULL) : NULL;
    EVP_PKEY *pkey = NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 && EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* jwk_rsa / jwk_ec: the public key of one JWK (members n, e / crv, x, y), or NULL. */
static EVP_PKEY *jwk_rsa(json_t *jwk)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = b64_member(jwk, "n", &nlen), *e = b64_member(jwk, "e", &elen);
    BIGNUM *bn = n ? BN_bin2bn(n, (int)nlen, NULL) : NULL, *be = e ? BN_bin2bn(e, (int)elen, NULL) : NULL;
    OSSL_PARAM_BLD *bld = bn && be ? OSSL_PARAM_BLD_new() : NULL;
    EVP_PKEY *pkey = NULL;
    if (bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = pkey_from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *jwk_ec(json_t *jwk)
{
    size_t xlen = 0, ylen = 0;
    unsigned char *x = b64_member(jwk, "x", &xlen), *y = b64_member(jwk, "y", &ylen);
    EVP_PKEY *pkey = NULL;
    if (x && y && xlen == 32 && ylen == 32) {
        unsigned char point[65] = {0x04}; /* uncompressed: 04 || x || y */
        memcpy(point + 1, x, 32);
        memcpy(point + 33, y, 32);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point))
            pkey = pkey_from_params("EC", bld);
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return pkey;
}

/* load_jwks: every signing key of a JWKS file. Keys of other types or algorithms (OKP, RS384, "use":
 * "enc") are skipped; symmetric keys and private key material are errors (they do not belong in a
 * file of public keys); no usable key at all is an error. */
static bool load_jwks(struct jwt_keyset *ks, const char *path, char *err, size_t errlen)
{
    size_t n;
    char *text = read_small_file(path, &n, err, errlen);
    if (!text)
        return false;
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    free(text);
    json_t *list = json_object_get(root, "keys");
    if (!json_is_array(list)) {
        snprintf(err, errlen, "%s: not a JWKS (a JSON object with a \"keys\" array)%s%s", path, root ? "" : ": ",
                 root ? "" : je.text);
        json_decref(root);
        return false;
    }
    int used = 0;
    bool ok = true;
    size_t i;
    json_t *jwk;
    json_array_foreach(list, i, jwk) {
        char what[1100];
        snprintf(what, sizeof what, "%s: key %zu", path, i + 1);
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *kalg = json_string_value(json_object_get(jwk, "alg"));
        json_t *kidv = json_object_get(jwk, "kid");
        const char *kid = kidv ? json_string_value(kidv) : "";
        if (!json_is_object(jwk) || !kty || !kid || (kid[0] && !kid_ok(kid, strlen(kid)))) {
            snprintf(err, errlen, "%s: needs a \"kty\" and at most a printable \"kid\" of 1 to %d bytes", what,
                     JWT_KID_MAX - 1);
            ok = false;
            break;
        }
        if (strcmp(kty, "oct") == 0 || json_object_get(jwk, "d") || json_object_get(jwk, "k")) {
            snprintf(err, errlen, "%s: secret or private key material; a JWKS file holds public keys only (HS256: "
                                  "web.auth.jwt.hs256_secret)", what);
            ok = false;
            break;
        }
        bool rsa = strcmp(kty, "RSA") == 0, ec = strcmp(kty, "EC") == 0;
        if ((!rsa && !ec) || (use && strcmp(use, "sig") != 0) ||
            (kalg && strcmp(kalg, rsa ? "RS256" : "ES256") != 0))
            continue; /* not a key we verify with: another type, an encryption key, RS384, … */
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        if (ec && (!crv || strcmp(crv, "P-256") != 0))
            continue; /* P-384, P-521: other algorithms */
        EVP_PKEY *pkey = rsa ? jwk_rsa(jwk) : jwk_ec(jwk);
        enum jwt_alg alg;
        if (!pkey) {
            snprintf(err, errlen, "%s: malformed %s key (%s)", what, kty, rsa ? "n, e" : "x, y");
            ok = false;
            break;
        }
        if (!classify(pkey, what, &alg, err, errlen)) {
            EVP_PKEY_free(pkey);
            ok = false;
            break;
        }
        if (!add_key(ks, kid, alg, pkey, what, err, errlen)) {
            ok = false;
            break;
        }
        used++;
    }
    json_decref(root);
    if (ok && used == 0) {
        snprintf(err, errlen, "%s: no RS256 or ES256 signing key in it", path);
        ok = false;
    }
    return ok;
}

/* add_secret: the HS256 secret. Refused when short, and when it is a PEM text: a public key as an
 * HMAC secret is exactly the algorithm-confusion attack, so it must not be configurable either. */
static bool add_secret(struct jwt_keyset *ks, const char *secret, char *err, size_t errlen)
{
    size_t len = strlen(secret);
    if (len < JWT_HS256_SECRET_MIN) {
        snprintf(err, errlen, "web.auth.jwt.hs256_secret: shorter than %d bytes", JWT_HS256_SECRET_MIN);
        return false;
    }
    if (strstr(secret, "-----BEGIN")) {
        snprintf(err, errlen, "web.auth.jwt.hs256_secret: a PEM text; public keys go in web.auth.jwt.public_keys");
        return false;
    }
    if (!add_key(ks, "", JWT_HS256, NULL, "web.auth.jwt.hs256_secret", err, errlen))
        return false;
    struct jwt_key *k = &ks->keys[ks->n - 1];
    k->secret = OPENSSL_malloc(len);
    if (!k->secret) {
        ks->n--;
        snprintf(err, errlen, "web.auth.jwt.hs256_secret: out of memory");
        return false;
    }
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

struct jwt_keyset *jwt_keyset_load(const struct jwt_sources *src, char *err, size_t errlen)
{
    struct jwt_keyset *ks = calloc(1, sizeof *ks);
    if (!ks) {
        snprintf(err, errlen, "JWT keys: out of memory");
        return NULL;
    }
    bool ok = true;
    const char *p = src->public_keys ? src->public_keys : "";
    while (ok && *p) {
        while (is_space(*p))
            p++;
        const char *start = p;
        while (*p && !is_space(*p))
            p++;
        if (p > start)
            ok = load_pem(ks, start, (size_t)(p - start), err, errlen);
    }
    if (ok && src->jwks_file && src->jwks_file[0])
        ok = load_jwks(ks, src->jwks_file, err, errlen);
    if (ok && src->hs256_secret && src->hs256_secret[0])
        ok = add_secret(ks, src->hs256_secret, err, errlen);
    if (!ok) {
        jwt_keyset_free(ks);
        return NULL;
    }
    return ks;
}
