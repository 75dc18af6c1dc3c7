/* template_dir.h — the daemon's template directory (templates.path / TASKER_TEMPLATE_PATH):
 * every template file registered through the pool at start and on SIGHUP. */
#ifndef TASKER_TEMPLATE_DIR_H
#define TASKER_TEMPLATE_DIR_H

#include <stdbool.h>

struct orchd;
struct template_dir;

/* How long READY=1 waits for the first load before it goes out anyway (a logged warning): tasks
 * created right after start find the directory's templates, yet a slow database cannot hold the
 * daemon's readiness for ever. */
#define TEMPLATE_DIR_READY_WAIT_SECS 30

/* template_dir_new: nothing is read yet. on_done(arg) runs (from the loop) after each load has
 * finished — every file registered, found unchanged, refused or given up on. */
struct template_dir *template_dir_new(struct orchd *o, void (*on_done)(void *arg), void *arg);

/* template_dir_load: read the files of o->conf.templates_path (small local files: read here,
 * before returning; parse errors logged as file:line:column) and register them one after another
 * through the pool (never blocking the loop on the database). Registration is idempotent:
 * tasker.register_task_template answers 'unchanged' for a template stored as it is. Called while
 * a load is running, it loads again once that one ends. An empty path finishes at once. */
void template_dir_load(struct template_dir *td);

/* template_dir_retry: load again if the last load could not reach the database for some file
 * (called when the pool's connection comes back). */
void template_dir_retry(struct template_dir *td);

/* template_dir_done: the first load has finished (true at once with no path). */
bool template_dir_done(const struct template_dir *td);

/* template_dir_stop: no new registrations (SIGTERM); one in flight completes into td. */
void template_dir_stop(struct template_dir *td);
void template_dir_free(struct template_dir *td);

#endif
