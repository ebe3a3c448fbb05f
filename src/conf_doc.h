/* conf_doc: the text generated from the option tables (conf.c's command line, conf_opts.c's
 * source and endpoint options): --help, --version and the man page's option sections. The
 * top layer of conf: nothing in conf.c or conf_opts.c calls it; main() does, when
 * conf_parse() set conf.show. */
#ifndef ENTROPYD_CONF_DOC_H
#define ENTROPYD_CONF_DOC_H

#include "conf.h"

#include <stdio.h>

/* Print what show asks (--help, --help-man or --version) to out; nothing for CONF_RUN. */
void conf_doc_show(enum conf_show show, FILE *out);
/* Print the --help text. */
void conf_print_help(FILE *out);
/* Print the roff of the man page's OPTIONS, SOURCE OPTIONS and ENDPOINT OPTIONS sections. */
void conf_print_man(FILE *out);

#endif
