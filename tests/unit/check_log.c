/* check_log.c — unit tests of the log's escaping: one event is one line, whatever a message holds
 * (newlines, ESC sequences, bidi overrides, invalid UTF-8), in text, journald and JSON modes. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <jansson.h>

#include "log.h"
#include "suites.h"

static const char *esc(const char *s, bool json)
{
    static char out[1024];
    log_escape(s, json, out, sizeof out);
    return out;
}

START_TEST(escape_text)
{
    ck_assert_str_eq(esc("plain text, with spaces", false), "plain text, with spaces");
    ck_assert_str_eq(esc("two\nlines", false), "two\\nlines");
    ck_assert_str_eq(esc("a\tb\rc", false), "a\\tb\\rc");
    ck_assert_str_eq(esc("\x1b[31mred\x1b[0m", false), "\\x1b[31mred\\x1b[0m");
    ck_assert_str_eq(esc("del\x7f", false), "del\\x7f");
    ck_assert_str_eq(esc("c1 \xc2\x9b", false), "c1 \\u009b");                 /* U+009B, the 8-bit CSI */
    ck_assert_str_eq(esc("rtl \xe2\x80\xae gnp.exe", false), "rtl \\u202e gnp.exe"); /* RIGHT-TO-LEFT OVERRIDE */
    ck_assert_str_eq(esc("\xe2\x80\xaa\xe2\x81\xa6\xe2\x81\xa9", false), "\\u202a\\u2066\\u2069");
    ck_assert_str_eq(esc("ls\xe2\x80\xa8ps\xe2\x80\xa9", false), "ls\\u2028ps\\u2029");
    ck_assert_str_eq(esc("bad \xff\xc3 utf8", false), "bad \\xff\\xc3 utf8");
    ck_assert_str_eq(esc("overlong \xc0\xaf", false), "overlong \\xc0\\xaf");
    /* Printable text outside ASCII stays as it is. */
    ck_assert_str_eq(esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\x8b", false),
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\x8b");
    /* Quotes and backslashes are text in text mode. */
    ck_assert_str_eq(esc("say \"hi\" \\ bye", false), "say \"hi\" \\ bye");
}
END_TEST

START_TEST(escape_json)
{
    ck_assert_str_eq(esc("say \"hi\" \\ bye", true), "say \\\"hi\\\" \\\\ bye");
    ck_assert_str_eq(esc("two\nlines\x1b", true), "two\\nlines\\u001b");
    ck_assert_str_eq(esc("rtl \xe2\x80\xae", true), "rtl \\u202e");
    ck_assert_str_eq(esc("bad \xff", true), "bad \\\\xff");
    /* Whatever the input, the result inside quotes is a JSON string that decodes. */
    static const char *const inputs[] = {"\x01\x02\x7f\xc2\x80", "\xe2\x80\xae\xed\xa0\x80", "\"\\\n", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        char doc[1100];
        snprintf(doc, sizeof doc, "[\"%s\"]", esc(inputs[i], true));
        json_error_t jerr;
        json_t *j = json_loads(doc, 0, &jerr);
        ck_assert_msg(j != NULL, "input %zu: %s is not JSON: %s", i, doc, jerr.text);
        json_decref(j);
    }
}
END_TEST

START_TEST(escape_truncates_whole)
{
    char out[8];
    size_t n = log_escape("abcde\nfg", false, out, 7); /* "abcde\\n" and its NUL need 8 */
    ck_assert_str_eq(out, "abcde");
    ck_assert_uint_eq(n, 5);
    n = log_escape("\xe2\x80\xae", false, out, 6);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(n, 0);
}
END_TEST

/* capture: run log_write with stderr sent to a file; returns what was written (static). */
static const char *capture(bool journal, bool json, const char *component, const char *msg)
{
    static char buf[4096];
    char path[] = "/tmp/check_log.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    if (journal)
        setenv("JOURNAL_STREAM", "8:1234", 1);
    else
        unsetenv("JOURNAL_STREAM");
    log_init(LOG_LVL_DEBUG, json);
    log_write(LOG_LVL_WARN, component, "%s", msg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    log_init(LOG_LVL_ERROR, false);
    unsetenv("JOURNAL_STREAM");
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static const char forged[] = "template \"x\nERROR forged line\r\n<3>http: also forged\x1b]0;title\x07\xe2\x80\xae\"";

START_TEST(one_event_one_line)
{
    /* journald: the priority prefix, then the whole event on one line */
    const char *out = capture(true, false, "http", forged);
    ck_assert_int_eq(count_char(out, '\n'), 1);
    ck_assert_int_eq(out[strlen(out) - 1], '\n');
    ck_assert_str_eq(out, "<4>http: template \"x\\nERROR forged line\\r\\n<3>http: also forged\\x1b]0;title\\x07\\u202e\"\n");
    /* text on a terminal: timestamp, level, one line */
    out = capture(false, false, "http", forged);
    ck_assert_int_eq(count_char(out, '\n'), 1);
    ck_assert_ptr_nonnull(strstr(out, " warn  http: template \"x\\nERROR forged line\\r\\n<3>"));
    ck_assert_ptr_null(strchr(out, '\x1b'));
    /* the component is escaped too */
    out = capture(true, false, "ht\ntp", "m");
    ck_assert_str_eq(out, "<4>ht\\ntp: m\n");
}
END_TEST

START_TEST(json_lines_stay_json)
{
    const char *out = capture(true, true, "http", forged);
    ck_assert_int_eq(count_char(out, '\n'), 1);
    ck_assert(strncmp(out, "<4>{", 4) == 0);
    json_error_t jerr;
    json_t *j = json_loads(out + 3, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON: %s (%s)", out, jerr.text);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), forged);
    json_decref(j);
    out = capture(false, true, "http", "bad \xff utf8");
    j = json_loads(out, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON: %s (%s)", out, jerr.text);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "bad \\xff utf8");
    json_decref(j);
}
END_TEST

Suite *make_log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("escape");
    tcase_add_test(tc, escape_text);
    tcase_add_test(tc, escape_json);
    tcase_add_test(tc, escape_truncates_whole);
    tcase_add_test(tc, one_event_one_line);
    tcase_add_test(tc, json_lines_stay_json);
    suite_add_tcase(s, tc);
    return s;
}
