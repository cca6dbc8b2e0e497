/* cmds.h: the shardq subcommands, one line per command (dispatched from main.c). */
#ifndef SQ_CMDS_H
#define SQ_CMDS_H

int cmd_tokenize(int argc, char **argv);

#endif
