/* jwt_verify.c — verification of one JWT bearer token: its shape, the key its header selects (among
 * keys of the header's algorithm only), its signature, then its claims. Pure: no I/O, no clock. */
#include "jwt_keyset.h"

#include "http_auth.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *reason, *text;
} errors[JWT_E_COUNT] = {
#define JWT_ROW(name, reason, text) [JWT_E_##name] = {reason, text},
    JWT_ERRORS(JWT_ROW)
#undef JWT_ROW
};

const char *jwt_error_reason(enum jwt_error e)
{
    return (unsigned)e < JWT_E_COUNT ? errors[e].reason : "internal";
}

const char *jwt_error_text(enum jwt_error e)
{
    return (unsigned)e < JWT_E_COUNT ? errors[e].text : errors[JWT_E_INTERNAL].text;
}

/* decode_json: a base64url segment holding a JSON object; NULL if it is anything else. Duplicate
 * names are refused: two "alg"s or two "sub"s must not be read one way here and another elsewhere. */
static json_t *decode_json(const char *seg, size_t len)
{
    unsigned char buf[JWT_TOKEN_MAX];
    long n = jwt_b64url_decode(seg, len, buf, sizeof buf);
    if (n <= 0)
        return NULL;
    json_t *v = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static bool alg_parse(const char *s, enum jwt_alg *out)
{
    for (int a = 0; a < JWT_ALG_COUNT; a++) {
        if (strcmp(s, jwt_alg_name((enum jwt_alg)a)) == 0) {
            *out = (enum jwt_alg)a;
            return true;
        }
    }
    return false;
}

/* printable: 1..max-1 bytes of printable ASCII other than space (key ids and subjects: they reach
 * logs and audit rows). */
static bool printable(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len >= max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* verify_with: whether sig is k's signature of the signing input in (header.payload). */
static bool verify_with(const struct jwt_key *k, const unsigned char *sig, size_t siglen, const char *in,
                        size_t inlen)
{
    if (k->alg == JWT_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (siglen != 32 || !HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)in, inlen, mac,
                                  &maclen) || maclen != 32)
            return false;
        return CRYPTO_memcmp(mac, sig, 32) == 0;
    }
    unsigned char der[80];
    const unsigned char *vsig = sig;
    size_t vlen = siglen;
    if (k->alg == JWT_ES256) {
        /* JWS carries R || S (RFC 7518 §3.4); OpenSSL verifies the DER form. */
        if (siglen != 64)
            return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return false;
        }
        int n = i2d_ECDSA_SIG(es, NULL);
        unsigned char *p = der;
        bool fits = n > 0 && (size_t)n <= sizeof der && i2d_ECDSA_SIG(es, &p) == n;
        ECDSA_SIG_free(es); /* frees r and s */
        if (!fits)
            return false;
        vsig = der;
        vlen = (size_t)n;
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    bool ok = mctx && EVP_DigestVerifyInit(mctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
              EVP_DigestVerify(mctx, vsig, vlen, (const unsigned char *)in, inlen) == 1;
    EVP_MD_CTX_free(mctx);
    return ok;
}

/* check_signature: the header's checks and the signature. hdr is the decoded header. */
static enum jwt_error check_signature(const struct jwt_keyset *ks, json_t *hdr, const char *token, size_t signed_len,
                                      const char *sig64, size_t sig64len, enum jwt_alg *alg_out)
{
    const char *alg_name = json_string_value(json_object_get(hdr, "alg"));
    enum jwt_alg alg;
    /* "none", RS512, a missing alg, or one no configured key has: refused before any key is used. */
    if (!alg_name || !alg_parse(alg_name, &alg) || !(jwt_keyset_algs(ks) & (1u << alg)))
        return JWT_E_ALGORITHM;
    if (json_object_get(hdr, "crit"))
        return JWT_E_MALFORMED; /* extensions we would have to understand (RFC 7515 §4.1.11) */
    json_t *kidv = json_object_get(hdr, "kid");
    const char *kid = kidv ? json_string_value(kidv) : NULL;
    if (kidv && (!kid || !printable(kid, JWT_KID_MAX)))
        return JWT_E_MALFORMED;
    unsigned char sig[512];
    long siglen = jwt_b64url_decode(sig64, sig64len, sig, sizeof sig);
    if (siglen <= 0)
        return JWT_E_SIGNATURE;
    /* The candidates: keys of the header's algorithm that the kid names (or every one of them when
     * the token names none; keys without an id serve any kid). Never a key of another algorithm:
     * an RSA public key is no HMAC secret, whatever the header says. */
    bool kid_elsewhere = false;
    int tried = 0;
    for (int i = 0; i < ks->n; i++) {
        const struct jwt_key *k = &ks->keys[i];
        bool named = !kid || !k->kid[0] || strcmp(k->kid, kid) == 0;
        if (k->alg != alg) {
            kid_elsewhere |= kid && k->kid[0] && strcmp(k->kid, kid) == 0;
            continue;
        }
        if (!named)
            continue;
        tried++;
        if (verify_with(k, sig, (size_t)siglen, token, signed_len)) {
            *alg_out = alg;
            return JWT_E_OK;
        }
    }
    if (tried == 0)
        return kid_elsewhere ? JWT_E_ALGORITHM : JWT_E_UNKNOWN_KEY;
    return JWT_E_SIGNATURE;
}

/* audience_has: aud (a string or an array of strings) includes want. */
static bool audience_has(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

/* grant_words: the grants of a space-separated string of permissions (unknown ones grant nothing). */
static unsigned grant_words(const char *s)
{
    unsigned grants = 0;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *start = s;
        while (*s && *s != ' ')
            s++;
        unsigned bits;
        if (s > start && auth_grant_parse(start, (size_t)(s - start), &bits))
            grants |= bits;
    }
    return grants;
}

/* check_claims: what the verified payload must satisfy; fills id. */
static enum jwt_error check_claims(json_t *pl, const struct jwt_policy *p, long long now, struct jwt_identity *id)
{
    long long leeway = p->leeway_secs > 0 ? p->leeway_secs : 0;
    json_t *exp = json_object_get(pl, "exp");
    if (!json_is_number(exp))
        return JWT_E_NO_EXPIRY;
    if ((double)now >= json_number_value(exp) + (double)leeway)
        return JWT_E_EXPIRED;
    json_t *nbf = json_object_get(pl, "nbf");
    if (nbf && !json_is_number(nbf))
        return JWT_E_MALFORMED;
    if (nbf && (double)(now + leeway) < json_number_value(nbf))
        return JWT_E_NOT_YET_VALID;
    if (p->issuer && p->issuer[0]) {
        const char *iss = json_string_value(json_object_get(pl, "iss"));
        if (!iss || strcmp(iss, p->issuer) != 0)
            return JWT_E_ISSUER;
    }
    json_t *aud = json_object_get(pl, "aud");
    if (p->audience && p->audience[0] ? !aud || !audience_has(aud, p->audience) : aud != NULL)
        return JWT_E_AUDIENCE;
    const char *sub = json_string_value(json_object_get(pl, "sub"));
    if (!sub || !printable(sub, JWT_SUB_MAX))
        return JWT_E_SUBJECT;
    unsigned grants = 0;
    json_t *perms = json_object_get(pl, p->permissions_claim && p->permissions_claim[0] ? p->permissions_claim
                                                                                        : "permissions");
    if (json_is_string(perms)) {
        grants = grant_words(json_string_value(perms));
    } else if (json_is_array(perms)) {
        size_t i;
        json_t *v;
        json_array_foreach(perms, i, v) {
            const char *g = json_string_value(v);
            unsigned bits;
            if (!g)
                return JWT_E_PERMISSIONS;
            if (auth_grant_parse(g, strlen(g), &bits))
                grants |= bits;
        }
    } else if (perms) {
        return JWT_E_PERMISSIONS;
    }
    snprintf(id->sub, sizeof id->sub, "%s", sub);
    id->grants = grants;
    id->exp = (long long)json_number_value(exp);
    return JWT_E_OK;
}

enum jwt_error jwt_verify(const struct jwt_keyset *ks, const struct jwt_policy *p, const char *token, size_t len,
                          long long now, struct jwt_identity *id)
{
    memset(id, 0, sizeof *id);
    if (len > JWT_TOKEN_MAX)
        return JWT_E_TOO_LONG;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', (size_t)(token + len - dot2 - 1)) || dot1 == token ||
        dot2 == dot1 + 1)
        return JWT_E_MALFORMED;
    if (!ks || ks->n == 0)
        return JWT_E_ALGORITHM;
    json_t *hdr = decode_json(token, (size_t)(dot1 - token));
    if (!hdr)
        return JWT_E_MALFORMED;
    enum jwt_alg alg = JWT_RS256;
    enum jwt_error e = check_signature(ks, hdr, token, (size_t)(dot2 - token), dot2 + 1,
                                       (size_t)(token + len - dot2 - 1), &alg);
    json_decref(hdr);
    if (e != JWT_E_OK)
        return e;
    /* From here on the payload is what a key holder signed. */
    json_t *pl = decode_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!pl)
        return JWT_E_MALFORMED;
    e = check_claims(pl, p, now, id);
    json_decref(pl);
    if (e == JWT_E_OK)
        id->alg = alg;
    return e;
}
