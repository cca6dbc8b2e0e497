/* cmds.h: the subcommands main.c dispatches; argv[0] is the subcommand's name. */
#ifndef SQ_CMDS_H
#define SQ_CMDS_H

int cmd_eval(int argc, char **argv);

#endif
