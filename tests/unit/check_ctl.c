/* check_ctl.c — taskerctl's Graphviz rendering (ctl_render_dot): SVG and PNG from a DOT text, the
 * DOT passed through, and a malformed graph or an unknown format refused with a message. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "suites.h"

/* A small DAG shaped like the daemon's /graph answers: a diamond, nodes coloured by state. */
static const char dag[] =
    "digraph task {\n"
    "  node [shape=box, style=filled];\n"
    "  \"charge\" [label=\"charge\\n1 attempt\", fillcolor=\"#9be29b\"];\n"
    "  \"reserve\" [label=\"reserve\", fillcolor=\"#f4a3a3\"];\n"
    "  \"ship\" [label=\"ship\", fillcolor=\"#dddddd\"];\n"
    "  \"notify\" [label=\"notify\"];\n"
    "  \"charge\" -> \"ship\"; \"reserve\" -> \"ship\"; \"ship\" -> \"notify\";\n"
    "}\n";

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

START_TEST(svg_holds_every_node_and_edge)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    ck_assert_msg(ctl_render_dot(dag, strlen(dag), "svg", &out, &len, err, sizeof err), "%s", err);
    ck_assert(len > 100);
    ck_assert(contains(out, len, "<svg"));
    ck_assert(contains(out, len, "</svg>"));
    ck_assert(contains(out, len, "<title>charge</title>"));
    ck_assert(contains(out, len, "<title>reserve</title>"));
    ck_assert(contains(out, len, "<title>notify</title>"));
    ck_assert(contains(out, len, "<title>charge&#45;&gt;ship</title>")); /* the edge */
    ck_assert(contains(out, len, "#9be29b"));                              /* the state's colour */
    free(out);
}
END_TEST

START_TEST(png_is_a_png)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    ck_assert_msg(ctl_render_dot(dag, strlen(dag), "png", &out, &len, err, sizeof err), "%s", err);
    ck_assert(len > 8);
    ck_assert(memcmp(out, "\x89PNG\r\n\x1a\n", 8) == 0);
    free(out);
}
END_TEST

START_TEST(dot_passes_through)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    ck_assert(ctl_render_dot(dag, strlen(dag), "dot", &out, &len, err, sizeof err));
    ck_assert_uint_eq(len, strlen(dag));
    ck_assert(memcmp(out, dag, len) == 0);
    free(out);
}
END_TEST

START_TEST(bad_input_is_refused_with_a_reason)
{
    static const char broken[] = "digraph { a -> ; }";
    char *out = NULL, err[256] = "";
    size_t len = 0;
    ck_assert(!ctl_render_dot(broken, strlen(broken), "svg", &out, &len, err, sizeof err));
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err, "does not parse") != NULL, "%s", err);
    ck_assert(!strchr(err, '\n'));
    ck_assert(!ctl_render_dot(dag, strlen(dag), "gif", &out, &len, err, sizeof err));
    ck_assert_msg(strstr(err, "unknown format 'gif'") != NULL, "%s", err);
    /* A failure leaves nothing behind: the next graph renders. */
    ck_assert_msg(ctl_render_dot(dag, strlen(dag), "svg", &out, &len, err, sizeof err), "%s", err);
    ck_assert(contains(out, len, "<title>ship</title>"));
    free(out);
}
END_TEST

Suite *make_ctl_suite(void)
{
    Suite *s = suite_create("ctl");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, svg_holds_every_node_and_edge);
    tcase_add_test(tc, png_is_a_png);
    tcase_add_test(tc, dot_passes_through);
    tcase_add_test(tc, bad_input_is_refused_with_a_reason);
    suite_add_tcase(s, tc);
    return s;
}
