/* cmds.h: the shardq subcommands; each gets argv starting at its own name. */
#ifndef SQ_CMDS_H
#define SQ_CMDS_H

int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_models(int argc, char **argv);

#endif
