/* libFuzzer target for the spec parsers: any text given to --source, --listen or
 * --connect must parse or fail with a message, never crash, read freed memory or leak. */
#include "conf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *spec = malloc(size + 1);
	char err[512];
	struct source_conf sc;
	struct endpoint_conf ec;

	if (spec == NULL) {
		return 0;
	}
	memcpy(spec, data, size);
	spec[size] = '\0';
	(void)conf_parse_source(spec, 0, &sc, err, sizeof(err));
	conf_source_free(&sc);
	(void)conf_parse_endpoint(spec, false, &ec, err, sizeof(err));
	conf_endpoint_free(&ec);
	(void)conf_parse_endpoint(spec, true, &ec, err, sizeof(err));
	conf_endpoint_free(&ec);
	free(spec);
	return 0;
}
