#!/usr/bin/env bash
# 90_demo_rabbitmq.sh — `make demo BACKEND=rabbitmq`: 90_demo.sh's run and checks on
# messaging.backend = rabbitmq, with the demo's own private broker (skipped only where
# rabbitmq-server cannot start).
# make-check: long 90
# make-check: broker
TEST_DEMO_BACKEND=rabbitmq exec bash "$(dirname "$0")/90_demo.sh"
