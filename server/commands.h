/* The server's `modserve` subcommands; each lives in its own file and returns an exit
 * code. `bench` is bench's (bench/commands.h); server/cli/main.c (the binary) dispatches to both. */
#ifndef MS_SERVER_COMMANDS_H
#define MS_SERVER_COMMANDS_H

int ms_cmd_serve(int argc, char **argv);    /* server/cmd_serve.c */
int ms_cmd_run(int argc, char **argv);      /* server/cmd_run.c */
int ms_cmd_model(int argc, char **argv);    /* server/cmd_model.c */
int ms_cmd_tokenize(int argc, char **argv); /* server/cmd_tokenize.c */
int ms_cmd_image(int argc, char **argv);    /* server/cmd_image.c */

#endif
