/* check_jwt.c — unit tests of the JWT verifier: tokens signed here with real keys, accepted when
 * valid and refused (with the right reason) when forged, confused, tampered, stale or misaddressed;
 * and the key loader's refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "conf.h"
#include "http_auth.h"
#include "jwt_auth.h"
#include "suites.h"

#define NOW 1700000000LL
#define SECRET "0123456789abcdef0123456789abcdef-hs256"

static EVP_PKEY *rsa1, *rsa2, *ec1, *ec_other, *rsa_small, *ec384;
static char dir[] = "/tmp/check_jwt.XXXXXX";
static char rsa1_pem[300], rsa2_pem[300], ec1_pem[300], small_pem[300], ec384_pem[300], priv_pem[300];

/* ---- signing, for the tests ------------------------------------------------------------------- */

static void b64url(const unsigned char *in, size_t len, char *out)
{
    unsigned char tmp[12000];
    int n = EVP_EncodeBlock(tmp, in, (int)len);
    int j = 0;
    for (int i = 0; i < n; i++) {
        if (tmp[i] == '=')
            break;
        out[j++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    }
    out[j] = '\0';
}

/* sign: header.payload.signature, the signature made with pkey (RS256/ES256 by its type) or, when
 * pkey is NULL, HMAC-SHA256 with secret. */
static char *sign(const char *header, const char *payload, EVP_PKEY *pkey, const void *secret, size_t slen)
{
    static char tok[16384];
    char h[4096], p[8192];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)payload, strlen(payload), p);
    snprintf(tok, sizeof tok, "%s.%s", h, p);
    unsigned char sig[600];
    size_t siglen = sizeof sig;
    if (!pkey) {
        unsigned int n = 0;
        HMAC(EVP_sha256(), secret, (int)slen, (unsigned char *)tok, strlen(tok), sig, &n);
        siglen = n;
    } else {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        ck_assert(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, pkey) == 1);
        ck_assert(EVP_DigestSign(m, sig, &siglen, (unsigned char *)tok, strlen(tok)) == 1);
        EVP_MD_CTX_free(m);
        if (EVP_PKEY_is_a(pkey, "EC")) { /* DER → R || S */
            const unsigned char *d = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)siglen);
            ck_assert_ptr_nonnull(es);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            ECDSA_SIG_free(es);
            siglen = 64;
        }
    }
    char s[1000];
    b64url(sig, siglen, s);
    strcat(tok, ".");
    strcat(tok, s);
    return tok;
}

static char *claims(const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "{\"sub\":\"alice\",\"exp\":%lld,\"permissions\":[\"tasks:read\"]%s%s}", NOW + 600,
             extra[0] ? "," : "", extra);
    return buf;
}

static void write_pub(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    PEM_write_PUBKEY(f, k);
    fclose(f);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void keys_setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    rsa1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    ck_assert(rsa1 && rsa2 && rsa_small && ec1 && ec_other && ec384);
    snprintf(rsa1_pem, sizeof rsa1_pem, "%s/rsa1.pem", dir);
    snprintf(rsa2_pem, sizeof rsa2_pem, "%s/rsa2.pem", dir);
    snprintf(ec1_pem, sizeof ec1_pem, "%s/ec1.pem", dir);
    snprintf(small_pem, sizeof small_pem, "%s/small.pem", dir);
    snprintf(ec384_pem, sizeof ec384_pem, "%s/ec384.pem", dir);
    snprintf(priv_pem, sizeof priv_pem, "%s/private.pem", dir);
    write_pub(rsa1, rsa1_pem);
    write_pub(rsa2, rsa2_pem);
    write_pub(ec1, ec1_pem);
    write_pub(rsa_small, small_pem);
    write_pub(ec384, ec384_pem);
    FILE *f = fopen(priv_pem, "w");
    PEM_write_PrivateKey(f, rsa1, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static void keys_teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    EVP_PKEY_free(rsa1);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(rsa_small);
    EVP_PKEY_free(ec1);
    EVP_PKEY_free(ec_other);
    EVP_PKEY_free(ec384);
}

/* load: a key set; fails the test when it does not load. */
static struct jwt_keyset *load(const char *public_keys, const char *jwks, const char *secret)
{
    char err[400] = "";
    struct jwt_sources src = {.public_keys = public_keys, .jwks_file = jwks, .hs256_secret = secret};
    struct jwt_keyset *ks = jwt_keyset_load(&src, err, sizeof err);
    ck_assert_msg(ks != NULL, "key set did not load: %s", err);
    return ks;
}

/* refused: the key set does not load, and err contains want. */
static void refused(const char *public_keys, const char *jwks, const char *secret, const char *want)
{
    char err[400] = "";
    struct jwt_sources src = {.public_keys = public_keys, .jwks_file = jwks, .hs256_secret = secret};
    struct jwt_keyset *ks = jwt_keyset_load(&src, err, sizeof err);
    ck_assert_msg(ks == NULL, "loaded, but should not: %s", want);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

static const struct jwt_policy policy = {.permissions_claim = "permissions", .leeway_secs = 30};

static enum jwt_error verify_p(const struct jwt_keyset *ks, const struct jwt_policy *p, const char *tok,
                               struct jwt_identity *id)
{
    return jwt_verify(ks, p, tok, strlen(tok), NOW, id);
}

static enum jwt_error verify(const struct jwt_keyset *ks, const char *tok)
{
    struct jwt_identity id;
    return verify_p(ks, &policy, tok, &id);
}

#define RS "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES "{\"alg\":\"ES256\"}"
#define HS "{\"alg\":\"HS256\"}"

/* ---- valid tokens ------------------------------------------------------------------------------ */

START_TEST(valid_tokens)
{
    char keys[1000];
    snprintf(keys, sizeof keys, "%s\n%s", rsa1_pem, ec1_pem);
    struct jwt_keyset *ks = load(keys, NULL, SECRET);
    ck_assert_int_eq(jwt_keyset_count(ks), 3);
    struct jwt_identity id;
    ck_assert_int_eq(verify_p(ks, &policy, sign(RS, claims(""), rsa1, NULL, 0), &id), JWT_E_OK);
    ck_assert_str_eq(id.sub, "alice");
    ck_assert_int_eq(id.alg, JWT_RS256);
    ck_assert(auth_allows(id.grants, AUTH_TASKS_READ));
    ck_assert(!auth_allows(id.grants, AUTH_TASKS_CREATE));
    ck_assert_int_eq(id.exp, NOW + 600);
    ck_assert_int_eq(verify_p(ks, &policy, sign(ES, claims(""), ec1, NULL, 0), &id), JWT_E_OK);
    ck_assert_int_eq(id.alg, JWT_ES256);
    ck_assert_int_eq(verify_p(ks, &policy, sign(HS, claims(""), NULL, SECRET, strlen(SECRET)), &id), JWT_E_OK);
    ck_assert_int_eq(id.alg, JWT_HS256);
    jwt_keyset_free(ks);
}
END_TEST

/* ---- algorithms: the key decides ---------------------------------------------------------------- */

START_TEST(alg_none_refused)
{
    struct jwt_keyset *ks = load(rsa1_pem, NULL, SECRET);
    char h[100], p[300], tok[500];
    b64url((const unsigned char *)"{\"alg\":\"none\"}", 14, h);
    const char *c = claims("");
    b64url((const unsigned char *)c, strlen(c), p);
    snprintf(tok, sizeof tok, "%s.%s.", h, p);
    ck_assert_int_eq(verify(ks, tok), JWT_E_ALGORITHM);
    snprintf(tok, sizeof tok, "%s.%s.c2ln", h, p);
    ck_assert_int_eq(verify(ks, tok), JWT_E_ALGORITHM);
    /* "None", a missing alg, a non-string alg */
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"None\"}", c, NULL, SECRET, strlen(SECRET))), JWT_E_ALGORITHM);
    ck_assert_int_eq(verify(ks, sign("{\"typ\":\"JWT\"}", c, NULL, SECRET, strlen(SECRET))), JWT_E_ALGORITHM);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":256}", c, NULL, SECRET, strlen(SECRET))), JWT_E_ALGORITHM);
    jwt_keyset_free(ks);
}
END_TEST

/* The classic confusion: HS256 "signed" with the RSA public key's PEM text as the HMAC secret. */
START_TEST(hs256_with_public_key_refused)
{
    FILE *f = fopen(rsa1_pem, "r");
    char pem[4096];
    size_t n = fread(pem, 1, sizeof pem, f);
    fclose(f);
    const char *c = claims("");
    char *forged = strdup(sign(HS, c, NULL, pem, n));
    /* only RSA keys: HS256 is no algorithm of theirs */
    struct jwt_keyset *ks = load(rsa1_pem, NULL, NULL);
    ck_assert_int_eq(verify(ks, forged), JWT_E_ALGORITHM);
    jwt_keyset_free(ks);
    /* an HS256 secret configured too: still only that secret verifies HS256 */
    ks = load(rsa1_pem, NULL, SECRET);
    ck_assert_int_eq(verify(ks, forged), JWT_E_SIGNATURE);
    jwt_keyset_free(ks);
    free(forged);
    /* nor can the PEM text be configured as the secret */
    refused(NULL, NULL, pem, "a PEM text");
}
END_TEST

START_TEST(alg_without_key_refused)
{
    struct jwt_keyset *ks = load(rsa1_pem, NULL, NULL);
    const char *c = claims("");
    ck_assert_int_eq(verify(ks, sign(ES, c, ec1, NULL, 0)), JWT_E_ALGORITHM);
    ck_assert_int_eq(verify(ks, sign(HS, c, NULL, SECRET, strlen(SECRET))), JWT_E_ALGORITHM);
    /* RS512 signed with the right key: not an algorithm we verify */
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS512\"}", c, rsa1, NULL, 0)), JWT_E_ALGORITHM);
    /* an ES256 header over an RSA signature */
    char *t = sign(RS, c, rsa1, NULL, 0);
    char h[64];
    b64url((const unsigned char *)ES, strlen(ES), h);
    char tok[4096];
    snprintf(tok, sizeof tok, "%s%s", h, strchr(t, '.'));
    struct jwt_keyset *both = load(rsa1_pem, NULL, NULL);
    ck_assert_int_eq(verify(both, tok), JWT_E_ALGORITHM);
    jwt_keyset_free(both);
    jwt_keyset_free(ks);
}
END_TEST

/* ---- tampering and signatures ------------------------------------------------------------------- */

START_TEST(tampering_refused)
{
    char keys[1000];
    snprintf(keys, sizeof keys, "%s %s", rsa1_pem, ec1_pem);
    struct jwt_keyset *ks = load(keys, NULL, SECRET);
    struct { const char *hdr; EVP_PKEY *k; } cases[] = {{RS, rsa1}, {ES, ec1}, {HS, NULL}};
    for (size_t i = 0; i < 3; i++) {
        char tok[16384];
        snprintf(tok, sizeof tok, "%s", sign(cases[i].hdr, claims(""), cases[i].k, SECRET, strlen(SECRET)));
        ck_assert_int_eq(verify(ks, tok), JWT_E_OK);
        /* the payload swapped for one granting everything */
        char p[600], forged[16384];
        const char *greedy = "{\"sub\":\"alice\",\"exp\":1800000000,\"permissions\":[\"*\"]}";
        b64url((const unsigned char *)greedy, strlen(greedy), p);
        char *dot1 = strchr(tok, '.'), *dot2 = strchr(dot1 + 1, '.');
        snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(dot1 - tok), tok, p, dot2);
        ck_assert_int_eq(verify(ks, forged), JWT_E_SIGNATURE);
        /* the signature's last byte changed */
        unsigned char sig[600];
        long sl = jwt_b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof sig);
        ck_assert_int_gt(sl, 0);
        sig[sl - 1] ^= 0x01;
        char s64[1000];
        b64url(sig, (size_t)sl, s64);
        snprintf(forged, sizeof forged, "%.*s.%s", (int)(dot2 - tok), tok, s64);
        ck_assert_int_eq(verify(ks, forged), JWT_E_SIGNATURE);
        /* one bit of the signature flipped */
        size_t last = strlen(tok) - 3;
        tok[last] = tok[last] == 'A' ? 'B' : 'A';
        ck_assert_int_eq(verify(ks, tok), JWT_E_SIGNATURE);
        /* the signature cut short, and empty */
        tok[last] = '\0';
        ck_assert_int_eq(verify(ks, tok), JWT_E_SIGNATURE);
        dot2 = strrchr(tok, '.');
        dot2[1] = '\0';
        ck_assert_int_eq(verify(ks, tok), JWT_E_SIGNATURE);
    }
    /* signed by a key we do not have */
    ck_assert_int_eq(verify(ks, sign(ES, claims(""), ec_other, NULL, 0)), JWT_E_SIGNATURE);
    ck_assert_int_eq(verify(ks, sign(RS, claims(""), rsa2, NULL, 0)), JWT_E_SIGNATURE);
    ck_assert_int_eq(verify(ks, sign(HS, claims(""), NULL, SECRET "x", strlen(SECRET) + 1)), JWT_E_SIGNATURE);
    jwt_keyset_free(ks);
}
END_TEST

START_TEST(kid_selects_key)
{
    char keys[1000];
    snprintf(keys, sizeof keys, "one=%s two=%s ec=%s", rsa1_pem, rsa2_pem, ec1_pem);
    struct jwt_keyset *ks = load(keys, NULL, NULL);
    const char *c = claims("");
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"two\"}", c, rsa2, NULL, 0)), JWT_E_OK);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"one\"}", c, rsa1, NULL, 0)), JWT_E_OK);
    /* no kid: every RS256 key is tried */
    ck_assert_int_eq(verify(ks, sign(RS, c, rsa2, NULL, 0)), JWT_E_OK);
    /* a kid naming the other RSA key: only that key is tried */
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"one\"}", c, rsa2, NULL, 0)), JWT_E_SIGNATURE);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"three\"}", c, rsa1, NULL, 0)), JWT_E_UNKNOWN_KEY);
    /* a kid of an ES256 key under an RS256 header */
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"ec\"}", c, rsa1, NULL, 0)), JWT_E_ALGORITHM);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":7}", c, rsa1, NULL, 0)), JWT_E_MALFORMED);
    jwt_keyset_free(ks);
    /* two keys with one id: the loader refuses the ambiguity */
    snprintf(keys, sizeof keys, "same=%s same=%s", rsa1_pem, rsa2_pem);
    refused(keys, NULL, NULL, "\"same\" is used twice");
}
END_TEST

/* ---- claims ------------------------------------------------------------------------------------- */

START_TEST(time_claims)
{
    struct jwt_keyset *ks = load(NULL, NULL, SECRET);
    char c[300];
#define HS_TOKEN(...) (snprintf(c, sizeof c, __VA_ARGS__), sign(HS, c, NULL, SECRET, strlen(SECRET)))
#define HSC(text) sign(HS, (text), NULL, SECRET, strlen(SECRET))
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld}", NOW - 31)), JWT_E_EXPIRED);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld}", NOW - 29)), JWT_E_OK); /* leeway */
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\"}")), JWT_E_NO_EXPIRY);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":\"%lld\"}", NOW + 60)), JWT_E_NO_EXPIRY);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", NOW + 600, NOW + 31)),
                     JWT_E_NOT_YET_VALID);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", NOW + 600, NOW + 29)), JWT_E_OK);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":\"x\"}", NOW + 600)), JWT_E_MALFORMED);
    struct jwt_policy strict = policy;
    strict.leeway_secs = 0;
    struct jwt_identity id;
    ck_assert_int_eq(verify_p(ks, &strict, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld}", NOW), &id), JWT_E_EXPIRED);
    jwt_keyset_free(ks);
}
END_TEST

START_TEST(issuer_audience_subject)
{
    struct jwt_keyset *ks = load(NULL, NULL, SECRET);
    struct jwt_policy p = policy;
    p.issuer = "https://id.example";
    p.audience = "tasker";
    struct jwt_identity id;
    char c[400];
    const char *iss = "\"iss\":\"https://id.example\"";
    ck_assert_int_eq(verify_p(ks, &p, HSC(claims("\"iss\":\"https://id.example\",\"aud\":\"tasker\"")), &id),
                     JWT_E_OK);
    ck_assert_int_eq(verify_p(ks, &p, HSC(claims("\"iss\":\"https://evil.example\",\"aud\":\"tasker\"")),
                              &id), JWT_E_ISSUER);
    ck_assert_int_eq(verify_p(ks, &p, HSC(claims("\"aud\":\"tasker\"")), &id), JWT_E_ISSUER);
    char extra[200];
    snprintf(extra, sizeof extra, "%s,\"aud\":[\"other\",\"tasker\"]", iss);
    ck_assert_int_eq(verify_p(ks, &p, HSC(claims(extra)), &id), JWT_E_OK);
    snprintf(extra, sizeof extra, "%s,\"aud\":[\"other\"]", iss);
    ck_assert_int_eq(verify_p(ks, &p, HSC(claims(extra)), &id), JWT_E_AUDIENCE);
    snprintf(extra, sizeof extra, "%s", iss);
    ck_assert_int_eq(verify_p(ks, &p, HSC(claims(extra)), &id), JWT_E_AUDIENCE);
    /* no audience configured: a token addressed to someone is not for us */
    ck_assert_int_eq(verify(ks, HSC(claims("\"aud\":\"billing\""))), JWT_E_AUDIENCE);
    /* subjects: missing, empty, with a space or a newline, too long */
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"exp\":%lld}", NOW + 60)), JWT_E_SUBJECT);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"\",\"exp\":%lld}", NOW + 60)), JWT_E_SUBJECT);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a b\",\"exp\":%lld}", NOW + 60)), JWT_E_SUBJECT);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\\nINFO forged\",\"exp\":%lld}", NOW + 60)), JWT_E_SUBJECT);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"%0129d\",\"exp\":%lld}", 7, NOW + 60)), JWT_E_SUBJECT);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"%0128d\",\"exp\":%lld}", 7, NOW + 60)), JWT_E_OK);
    jwt_keyset_free(ks);
}
END_TEST

START_TEST(permissions_claim)
{
    struct jwt_keyset *ks = load(NULL, NULL, SECRET);
    struct jwt_identity id;
    char c[400];
    ck_assert_int_eq(verify_p(ks, &policy, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"permissions\":[\"tasks:*\","
                                                    "\"billing:admin\"]}", NOW + 60), &id), JWT_E_OK);
    ck_assert(auth_allows(id.grants, AUTH_TASKS_CREATE) && auth_allows(id.grants, AUTH_TASKS_CANCEL));
    ck_assert(!auth_allows(id.grants, AUTH_DLQ_READ));
    ck_assert_int_eq(verify_p(ks, &policy, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"permissions\":[\"*\"]}", NOW + 60),
                              &id), JWT_E_OK);
    ck_assert(auth_allows(id.grants, AUTH_DLQ_UPDATE) && auth_allows(id.grants, AUTH_TEMPLATES_WRITE));
    /* no claim: authenticated, allowed nothing */
    ck_assert_int_eq(verify_p(ks, &policy, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld}", NOW + 60), &id), JWT_E_OK);
    ck_assert_int_eq(id.grants, 0);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"permissions\":[\"*\",1]}", NOW + 60)),
                     JWT_E_PERMISSIONS);
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"permissions\":{\"*\":1}}", NOW + 60)),
                     JWT_E_PERMISSIONS);
    /* another claim, as an OAuth scope string */
    struct jwt_policy scope = policy;
    scope.permissions_claim = "scope";
    ck_assert_int_eq(verify_p(ks, &scope, HS_TOKEN("{\"sub\":\"a\",\"exp\":%lld,\"scope\":\"openid dlq:read "
                                                   "tasks:list\",\"permissions\":[\"*\"]}", NOW + 60), &id), JWT_E_OK);
    ck_assert(auth_allows(id.grants, AUTH_DLQ_READ) && auth_allows(id.grants, AUTH_TASKS_LIST));
    ck_assert(!auth_allows(id.grants, AUTH_TASKS_CREATE));
    jwt_keyset_free(ks);
}
END_TEST

/* ---- malformed tokens --------------------------------------------------------------------------- */

START_TEST(malformed_tokens)
{
    struct jwt_keyset *ks = load(rsa1_pem, NULL, SECRET);
    ck_assert_int_eq(verify(ks, "garbage"), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, "a.b"), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, "a.b.c.d"), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, ".b.c"), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, "a..c"), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, "!!!.b.c"), JWT_E_MALFORMED);
    char c[400];
    char *ok = strdup(sign(HS, claims(""), NULL, SECRET, strlen(SECRET)));
    ck_assert_int_eq(verify(ks, ok), JWT_E_OK);
    /* padding is not base64url */
    char padded[2048];
    snprintf(padded, sizeof padded, "%s=", ok);
    ck_assert_int_eq(verify(ks, padded), JWT_E_SIGNATURE);
    /* a header that is no JSON object, duplicate names, crit */
    ck_assert_int_eq(verify(ks, sign("[\"HS256\"]", claims(""), NULL, SECRET, strlen(SECRET))), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"HS256\",\"alg\":\"none\"}", claims(""), NULL, SECRET,
                                     strlen(SECRET))), JWT_E_MALFORMED);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims(""), NULL, SECRET,
                                     strlen(SECRET))), JWT_E_MALFORMED);
    /* duplicate claims in a signed payload: refused, not read one way or the other */
    ck_assert_int_eq(verify(ks, HS_TOKEN("{\"sub\":\"a\",\"sub\":\"root\",\"exp\":%lld}", NOW + 60)),
                     JWT_E_MALFORMED);
    /* huge */
    size_t n = JWT_TOKEN_MAX + 1;
    char *huge = malloc(n + 1);
    memset(huge, 'A', n);
    huge[10] = huge[20] = '.';
    huge[n] = '\0';
    ck_assert_int_eq(verify(ks, huge), JWT_E_TOO_LONG);
    free(huge);
    free(ok);
    /* no keys at all */
    ck_assert_int_eq(verify(NULL, sign(HS, claims(""), NULL, SECRET, strlen(SECRET))), JWT_E_ALGORITHM);
    jwt_keyset_free(ks);
    /* every reason is distinct and named */
    for (int a = 0; a < JWT_E_COUNT; a++)
        for (int b = a + 1; b < JWT_E_COUNT; b++)
            ck_assert_str_ne(jwt_error_reason((enum jwt_error)a), jwt_error_reason((enum jwt_error)b));
}
END_TEST

START_TEST(base64url_strict)
{
    unsigned char out[16];
    ck_assert_int_eq(jwt_b64url_decode("YWI", 3, out, sizeof out), 2);
    ck_assert(memcmp(out, "ab", 2) == 0);
    ck_assert_int_eq(jwt_b64url_decode("YWJ", 3, out, sizeof out), -1); /* unused bits set */
    ck_assert_int_eq(jwt_b64url_decode("YWI=", 4, out, sizeof out), -1);
    ck_assert_int_eq(jwt_b64url_decode("Y", 1, out, sizeof out), -1);
    ck_assert_int_eq(jwt_b64url_decode("Y+I", 3, out, sizeof out), -1);
    ck_assert_int_eq(jwt_b64url_decode("-_8", 3, out, sizeof out), 2);
    ck_assert_int_eq(out[0], 0xfb);
    ck_assert_int_eq(out[1], 0xff);
    ck_assert_int_eq(jwt_b64url_decode("YWJjZA", 6, out, 3), -1); /* does not fit */
}
END_TEST

/* ---- key loading -------------------------------------------------------------------------------- */

static void jwk_b64(EVP_PKEY *k, const char *param, char *out)
{
    BIGNUM *bn = NULL;
    ck_assert(EVP_PKEY_get_bn_param(k, param, &bn));
    unsigned char buf[600];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    b64url(buf, (size_t)n, out);
}

START_TEST(jwks_file)
{
    char n[600], e[16], x[64], y[64], jwks[4000], path[400];
    jwk_b64(rsa1, OSSL_PKEY_PARAM_RSA_N, n);
    jwk_b64(rsa1, OSSL_PKEY_PARAM_RSA_E, e);
    jwk_b64(ec1, OSSL_PKEY_PARAM_EC_PUB_X, x);
    jwk_b64(ec1, OSSL_PKEY_PARAM_EC_PUB_Y, y);
    snprintf(jwks, sizeof jwks,
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},"
             "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"abc\"}]}", n, e, x, y, n, e);
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    write_text(path, jwks);
    struct jwt_keyset *ks = load(NULL, path, NULL);
    ck_assert_int_eq(jwt_keyset_count(ks), 2); /* the encryption key and the OKP key skipped */
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"r\"}", claims(""), rsa1, NULL, 0)), JWT_E_OK);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"ES256\",\"kid\":\"e\"}", claims(""), ec1, NULL, 0)), JWT_E_OK);
    ck_assert_int_eq(verify(ks, sign("{\"alg\":\"RS256\",\"kid\":\"enc\"}", claims(""), rsa1, NULL, 0)),
                     JWT_E_UNKNOWN_KEY);
    jwt_keyset_free(ks);
    /* a kid in the JWKS and in public_keys both */
    char keys[400];
    snprintf(keys, sizeof keys, "r=%s", rsa2_pem);
    refused(keys, path, NULL, "\"r\" is used twice");
    /* secrets and private parts do not belong in it */
    write_text(path, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}");
    refused(NULL, path, NULL, "public keys only");
    snprintf(jwks, sizeof jwks, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\",\"d\":\"AQAB\"}]}", n, e);
    write_text(path, jwks);
    refused(NULL, path, NULL, "public keys only");
    write_text(path, "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}");
    refused(NULL, path, NULL, "malformed EC key");
    write_text(path, "{\"keys\":[]}");
    refused(NULL, path, NULL, "no RS256 or ES256 signing key");
    write_text(path, "{\"keys\":[{\"kty\":\"RSA\"}]");
    refused(NULL, path, NULL, "not a JWKS");
}
END_TEST

START_TEST(pem_refusals)
{
    refused("/nonexistent/key.pem", NULL, NULL, "/nonexistent/key.pem: cannot open");
    refused(small_pem, NULL, NULL, "1024 bits");
    refused(ec384_pem, NULL, NULL, "P-256");
    refused(priv_pem, NULL, NULL, "no PEM public key");
    refused(dir, NULL, NULL, "not a regular file");
    refused(NULL, NULL, "too-short-secret", "shorter than 32 bytes");
    refused("=x.pem", NULL, NULL, "key id before '='");
    /* an empty source is an empty set, not an error */
    struct jwt_keyset *ks = load("", "", "");
    ck_assert_int_eq(jwt_keyset_count(ks), 0);
    jwt_keyset_free(ks);
}
END_TEST

/* ---- configuration ------------------------------------------------------------------------------ */

START_TEST(jwt_config)
{
    struct conf c;
    char err[600], text[2000];
    conf_defaults(&c);
    snprintf(text, sizeof text, "web { auth { enabled = true\n jwt { enabled = true\n public_keys = \"k1=%s\"\n"
                                "issuer = \"https://id.example\" } } }\n", rsa1_pem);
    ck_assert_msg(conf_load_buffer(&c, "t.conf", text, err, sizeof err), "%s", err);
    ck_assert(c.web_auth_jwt_enabled);
    ck_assert_str_eq(c.web_auth_jwt_permissions_claim, "permissions");
    ck_assert_int_eq(c.web_auth_jwt_leeway_secs, 30);
    /* an unreadable key file: the error gives the line and names the file */
    conf_defaults(&c);
    ck_assert(!conf_load_buffer(&c, "t.conf", "web { auth { jwt {\n public_keys = \"/no/such/key.pem\" } } }\n", err,
                                sizeof err));
    ck_assert_msg(strstr(err, "t.conf:2:") && strstr(err, "/no/such/key.pem: cannot open"), "%s", err);
    /* JWT without auth: refused, rather than an open /v1 that looks protected */
    conf_defaults(&c);
    snprintf(text, sizeof text, "web { auth { jwt { enabled = true\n public_keys = \"%s\" } } }\n", rsa1_pem);
    ck_assert(!conf_load_buffer(&c, "t.conf", text, err, sizeof err));
    ck_assert_msg(strstr(err, "web.auth.jwt.enabled = true needs web.auth.enabled = true"), "%s", err);
    /* JWT on without a key */
    conf_defaults(&c);
    ck_assert(!conf_load_buffer(&c, "t.conf", "web { auth { enabled = true\n jwt { enabled = true } } }\n", err,
                                sizeof err));
    ck_assert_msg(strstr(err, "needs a key"), "%s", err);
    /* a short secret: said so, never echoed; the dump masks a good one */
    conf_defaults(&c);
    ck_assert(!conf_load_buffer(&c, "t.conf", "web { auth { jwt { hs256_secret = \"hunter2-hunter2\" } } }\n", err,
                                sizeof err));
    ck_assert_msg(strstr(err, "shorter than 32 bytes") && !strstr(err, "hunter2"), "%s", err);
    conf_defaults(&c);
    ck_assert(conf_load_buffer(&c, "t.conf", "web { auth { jwt { hs256_secret = \"" SECRET "\" } } }\n", err,
                               sizeof err));
    char *dump = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&dump, &dlen);
    conf_dump(&c, f);
    fclose(f);
    ck_assert_ptr_null(strstr(dump, SECRET));
    ck_assert_ptr_nonnull(strstr(dump, "hs256_secret = \"***\""));
    free(dump);
}
END_TEST

Suite *make_jwt_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("jwt");
    tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, valid_tokens);
    tcase_add_test(tc, alg_none_refused);
    tcase_add_test(tc, hs256_with_public_key_refused);
    tcase_add_test(tc, alg_without_key_refused);
    tcase_add_test(tc, tampering_refused);
    tcase_add_test(tc, kid_selects_key);
    tcase_add_test(tc, time_claims);
    tcase_add_test(tc, issuer_audience_subject);
    tcase_add_test(tc, permissions_claim);
    tcase_add_test(tc, malformed_tokens);
    tcase_add_test(tc, base64url_strict);
    tcase_add_test(tc, jwks_file);
    tcase_add_test(tc, pem_refusals);
    tcase_add_test(tc, jwt_config);
    suite_add_tcase(s, tc);
    return s;
}
