/* daemon.h — the daemon mode: configuration, the event loop and its components, signals. */
#ifndef TASKER_DAEMON_H
#define TASKER_DAEMON_H

#include <stdbool.h>

/* daemon_check_config: load and validate the configuration, print the result; 0 valid, 1 not. */
int daemon_check_config(const char *config_path, const char *env_name, bool verbose);

/* daemon_run: run until SIGTERM/SIGINT (drain, then 0) or a fatal error (1). config_path and
 * env_name are the -c / -e arguments (NULL: environment variables, then defaults). */
int daemon_run(const char *config_path, const char *env_name);

#endif
