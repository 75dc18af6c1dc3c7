/* ctl_graph.c — `task visualize` and `template visualize`: fetch a /graph endpoint's DOT, render it. */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctl_visualize(struct ctl *c, const char *path, const char *format, const char *outfile)
{
    if (strcmp(format, "svg") != 0 && strcmp(format, "png") != 0 && strcmp(format, "dot") != 0) {
        fprintf(stderr, "taskerctl: --format must be svg, png or dot (got '%s')\n", format);
        return CTL_EUSAGE;
    }
    struct ctl_buf p = {0}, resp = {0};
    ctl_buf_printf(&p, "%s", path);
    ctl_buf_query(&p, "format", "dot");
    long status = 0;
    int rc = ctl_http(c, "GET", p.s, NULL, &status, &resp);
    ctl_buf_free(&p);
    if (rc == CTL_OK && status != 200)
        rc = ctl_api_error(c, status, resp.s);
    char *data = NULL;
    size_t len = 0;
    char err[512];
    if (rc == CTL_OK && !ctl_render_dot(resp.s, resp.len, format, &data, &len, err, sizeof err)) {
        fprintf(stderr, "taskerctl: %s\n", err);
        rc = CTL_EFAIL;
    }
    ctl_buf_free(&resp);
    if (rc != CTL_OK)
        return rc;
    FILE *fp = outfile && strcmp(outfile, "-") != 0 ? fopen(outfile, "wb") : stdout;
    if (!fp) {
        fprintf(stderr, "taskerctl: cannot write %s: %s\n", outfile, strerror(errno));
        free(data);
        return CTL_EFAIL;
    }
    bool wrote = fwrite(data, 1, len, fp) == len;
    if (fp != stdout)
        wrote = (fclose(fp) == 0) && wrote;
    free(data);
    if (!wrote) {
        fprintf(stderr, "taskerctl: cannot write %s: %s\n", outfile ? outfile : "stdout", strerror(errno));
        return CTL_EFAIL;
    }
    return CTL_OK;
}
