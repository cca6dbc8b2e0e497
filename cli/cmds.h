/* cmds.h: the shardq subcommands dispatched by main.c. Each receives its own
 * argument vector: argv[0] is the subcommand's name, options follow. */
#ifndef SQ_CLI_CMDS_H
#define SQ_CLI_CMDS_H

int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_models(int argc, char **argv);

#endif
