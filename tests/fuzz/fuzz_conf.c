/* fuzz_conf.c — fuzz target: a configuration file through the daemon's loader (comment blanking,
 * libconfuse, per-key checks, cross-field validation). A line "#--overlay--" splits the input: the
 * two parts become a base file and its overlay environments/<env>.conf, loaded by conf_load (file
 * read, overlay merge, the overlay's environment rule); without it the text goes through
 * conf_load_buffer. An accepted configuration must survive a dump and a
 * reload unchanged (the dump is what `tasker-orchestratord config` prints). */
#include "fuzz.h"

#include "conf.h"

#include <errno.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);

#define OVERLAY_MARK "\n#--overlay--\n"

static char dir[64];
static char base_path[128];
static char overlay_dir[128];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* conf_load reads these; a developer's shell may set them */
    unsetenv("TASKER_ENV");
    unsetenv("TASKER_CONFIG_PATH");
    unsetenv("DATABASE_URL");
    unsetenv("TASKER_WEB_BIND_ADDRESS");
    unsetenv("TASKER_JWT_HS256_SECRET");
    snprintf(dir, sizeof dir, "%s/tasker-fuzz-conf-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(base_path, sizeof base_path, "%s/tasker.conf", dir);
    snprintf(overlay_dir, sizeof overlay_dir, "%s/environments", dir);
    if (mkdir(overlay_dir, 0700) != 0)
        abort();
    return 0;
}

static void write_file(const char *path, const char *text, size_t n)
{
    FILE *fp = fopen(path, "w");
    if (!fp || fwrite(text, 1, n, fp) != n || fclose(fp) != 0)
        abort();
}

/* set_overlays: the same overlay text for every environment, or none. */
static void set_overlays(const char *text, size_t n)
{
    static const char *const envs[] = {"test", "development", "production"};
    for (size_t i = 0; i < 3; i++) {
        char path[192];
        snprintf(path, sizeof path, "%s/%s.conf", overlay_dir, envs[i]);
        if (text)
            write_file(path, text, n);
        else if (unlink(path) != 0 && errno != ENOENT)
            abort();
    }
}

/* dump: conf_dump's text (malloc'd). */
static char *dump(const struct conf *c)
{
    char *text = NULL;
    size_t n = 0;
    FILE *fp = open_memstream(&text, &n);
    if (!fp)
        abort();
    conf_dump(c, fp);
    if (fclose(fp) != 0)
        abort();
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *mark = memmem(data, size, OVERLAY_MARK, strlen(OVERLAY_MARK));
    struct conf c;
    struct conf_source src;
    char err[1024];
    err[0] = '\0';
    bool ok;
    if (mark) {
        write_file(base_path, text, (size_t)(mark - text));
        const char *ov = mark + strlen(OVERLAY_MARK);
        set_overlays(ov, size - (size_t)(ov - text));
        ok = conf_load(&c, &src, base_path, NULL, err, sizeof err);
    } else {
        /* Without an overlay, the same parse without the file: conf_load reads a file into a
         * 1 MiB buffer, which under ASan costs an mmap per run (about ten times slower). */
        char *s = fuzz_cstr(data, size);
        conf_defaults(&c);
        ok = conf_load_buffer(&c, "fuzz.conf", s, err, sizeof err);
        free(s);
    }
    if (!ok) {
        FUZZ_CHECK(err[0] != '\0'); /* every refusal says why */
        return 0;
    }
    FUZZ_CHECK(conf_validate(&c, err, sizeof err));

    /* A SIGHUP from the defaults to this configuration. */
    struct conf cur;
    conf_defaults(&cur);
    char changed[512] = "";
    conf_apply_reload(&cur, &c, changed, sizeof changed);

    /* Round trip. The dump masks secrets (the URL's password, the API keys), so take those out. */
    struct conf plain = c, defaults;
    conf_defaults(&defaults);
    memcpy(plain.database_url, defaults.database_url, sizeof plain.database_url);
    memcpy(plain.web_auth_api_keys, defaults.web_auth_api_keys, sizeof plain.web_auth_api_keys);
    plain.web_auth_enabled = defaults.web_auth_enabled;
    if (!conf_validate(&plain, err, sizeof err))
        return 0;
    char *first = dump(&plain);
    struct conf again;
    conf_defaults(&again);
    if (!conf_load_buffer(&again, "dump", first, err, sizeof err)) {
        fprintf(stderr, "the dump does not load back: %s\n---\n%s---\n", err, first);
        abort();
    }
    char *second = dump(&again);
    if (strcmp(first, second) != 0) {
        fprintf(stderr, "the dump changes when loaded back:\n---\n%s---\n%s---\n", first, second);
        abort();
    }
    free(first);
    free(second);
    return 0;
}
