/* The ropex subcommands and the few helpers they share (train/main.c). */
#ifndef ROPEX_COMMANDS_H
#define ROPEX_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

/* Prints "ropex: MESSAGE" to stderr and exits 2 (user error). Only train/ exits. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
int is_help(const char *arg);
int64_t parse_positive(const char *flag, const char *s);
double now_s(void);   /* monotonic seconds */
void fmt_time(double s, char *out, size_t n);   /* "3m05s", "1h02m"; "?" when unknown */

int cmd_rope(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_plot(int argc, char **argv);

#endif
