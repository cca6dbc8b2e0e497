/* cmds.h: the shardq subcommands dispatched by main.c; each lives in <folder>/cmd_NAME.c. */
#ifndef SQ_CMDS_H
#define SQ_CMDS_H

int cmd_inspect(int argc, char **argv);

#endif
