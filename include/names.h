/* names.h — the one C form of the namespace rule of DESIGN §3 (shared by daemon and worker). */
#ifndef TASKER_NAMES_H
#define TASKER_NAMES_H

#include <stdbool.h>

/* The longest namespace: tasker_completion_<name> must fit PGMQ's 47-character queue names. */
#define NAMESPACE_NAME_MAX 29

/* namespace_name_valid: s matches ^[a-z][a-z0-9_]{0,28}$ (the CHECK on tasker.task_namespaces.name);
 * false for NULL. Checked before a name becomes part of a queue name. */
bool namespace_name_valid(const char *s);

#endif
