/* version.h — the release version, shown by --version, /health and /metrics. */
#ifndef TASKER_VERSION_H
#define TASKER_VERSION_H

#define TASKER_VERSION "0.1.0"

#endif
