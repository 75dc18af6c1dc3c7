/* ctl_render.c — DOT text to SVG or PNG with Graphviz's library (libgvc), in taskerctl's process. */
#include "ctl.h"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* copy_out: a malloc'd copy of data for the caller (Graphviz's buffers are freed its own way). */
static bool copy_out(const char *data, size_t len, char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = malloc(len ? len : 1);
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    memcpy(*out, data, len);
    *outlen = len;
    return true;
}

/* last_error: Graphviz's last message, on one line. */
static void last_error(const char *what, char *err, size_t errlen)
{
    const char *m = aglasterr();
    snprintf(err, errlen, "%s%s%s", what, m && *m ? ": " : "", m ? m : "");
    for (char *p = err; *p; p++)
        if (*p == '\n')
            *p = (p[1] ? ' ' : '\0');
}

bool ctl_render_dot(const char *dot, size_t dotlen, const char *format, char **out, size_t *outlen, char *err,
                    size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (strcmp(format, "dot") == 0)
        return copy_out(dot, dotlen, out, outlen, err, errlen);
    if (strcmp(format, "svg") != 0 && strcmp(format, "png") != 0) {
        snprintf(err, errlen, "unknown format '%s' (svg, png or dot)", format);
        return false;
    }
    /* agmemread wants a NUL-terminated string; the text came from the network, so make sure. */
    char *text = malloc(dotlen + 1);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    memcpy(text, dot, dotlen);
    text[dotlen] = '\0';
    /* Keep Graphviz's own messages off the terminal: they are collected and one is reported. */
    agseterr(AGMAX);
    GVC_t *gvc = gvContext();
    Agraph_t *g = gvc ? agmemread(text) : NULL;
    free(text);
    bool ok = false;
    if (!gvc) {
        snprintf(err, errlen, "cannot initialise Graphviz");
    } else if (!g) {
        last_error("the DOT text does not parse", err, errlen);
    } else if (gvLayout(gvc, g, "dot") != 0) {
        last_error("Graphviz could not lay the graph out", err, errlen);
    } else {
        char *data = NULL;
        unsigned int len = 0;
        if (gvRenderData(gvc, g, format, &data, &len) != 0 || !data)
            last_error("Graphviz could not render the graph", err, errlen);
        else
            ok = copy_out(data, len, out, outlen, err, errlen);
        if (data)
            gvFreeRenderData(data);
        gvFreeLayout(gvc, g);
    }
    if (g)
        agclose(g);
    if (gvc)
        gvFreeContext(gvc);
    return ok;
}
