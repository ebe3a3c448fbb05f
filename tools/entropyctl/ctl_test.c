/* ctl_test: `entropyctl test SOURCE [--bytes N]`: read N bytes from a source spec, opened by
 * the daemon's own drivers exactly as `entropyd --source SPEC` would open it, run the
 * SP 800-90B non-IID estimators (sp80090b.c) and print each estimate and the h= to
 * configure: the floor of the minimum, clamped to 1..8 (a source assessed below 1 bit per
 * byte gets a warning that names the fractional h it would need, since entropyd takes any
 * h in (0, 8]).
 *
 * The progress bar goes to stderr when stderr is a terminal, never into a pipe or a log. */
#include "ctl.h"

#include "conf.h"
#include "conf_opts.h"
#include "log.h"
#include "sp80090b.h"
#include "src.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_DEFAULT_BYTES 1000000L
#define TEST_MAX_BYTES (256L * 1024 * 1024)
#define TEST_MIN_BYTES 1000L

static void progress(size_t got, size_t want)
{
	int width = 40, full = (int)((double)got / (double)want * width);

	fprintf(stderr, "\rreading [%.*s%*s] %3d%% %zu/%zu bytes", full,
		"========================================", width - full, "",
		(int)(100.0 * (double)got / (double)want), got, want);
	if (got == want) {
		fputc('\n', stderr);
	}
	fflush(stderr);
}

/* Read want bytes from the opened source; -1 with a message printed. */
static int read_all(const struct src_driver *drv, void *st, const char *spec, uint8_t *buf,
		    size_t want)
{
	bool tty = isatty(STDERR_FILENO);
	size_t got = 0, shown = 0;
	char err[256] = "";

	while (got < want) {
		long n = drv->read(st, buf + got, want - got > 65536 ? 65536 : want - got, err,
				   sizeof(err));

		if (n <= 0) {
			if (tty) {
				fputc('\n', stderr);
			}
			fprintf(stderr, "entropyctl: source %s: %s after %zu of %zu bytes\n", spec,
				n == 0 ? "ended" : err, got, want);
			return -1;
		}
		got += (size_t)n;
		if (tty && (got - shown >= want / 100 || got == want)) {
			progress(got, want);
			shown = got;
		}
	}
	return 0;
}

static void print_estimate(const char *name, const char *section, double h)
{
	if (h < 0) {
		printf("  %-32s (%s)  n/a (too few samples)\n", name, section);
	} else {
		printf("  %-32s (%s)  %.6f bits/byte\n", name, section, h);
	}
}

static void report(const char *spec, size_t n, const struct sp80090b_result *r)
{
	int h = (int)floor(r->min);
	char base[512], *comma;

	printf("SP 800-90B non-IID min-entropy estimates over %zu bytes of %s:\n", n, spec);
	print_estimate("most common value", "6.3.1", r->mcv);
	print_estimate("collision (bit string)", "6.3.2", r->collision);
	print_estimate("Markov (bit string)", "6.3.3", r->markov);
	print_estimate("compression (bit string)", "6.3.4", r->compression);
	print_estimate("t-tuple", "6.3.5", r->tuple);
	print_estimate("longest repeated substring", "6.3.6", r->lrs);
	printf("min-entropy: %.6f bits per byte\n", r->min);
	if (h < 1) {
		printf("warning: assessed below 1 bit per byte: h=1 over-credits it; entropyd also "
		       "takes a fractional h=%.2f\n",
		       floor(r->min * 100) / 100);
		h = 1;
	}
	h = h > 8 ? 8 : h;
	/* The suggested spec is the one given, without an h= it may carry. */
	snprintf(base, sizeof(base), "%s", spec);
	comma = strstr(base, ",h=");
	if (comma != NULL) {
		const char *rest = strchr(comma + 1, ',');

		memmove(comma, rest ? rest : comma + strlen(comma),
			strlen(rest ? rest : comma + strlen(comma)) + 1);
	}
	printf("h=%d\n", h);
	printf("suggested: --source %s,h=%d\n", base, h);
}

static int usage(void)
{
	fprintf(stderr, "usage: entropyctl test SOURCE [--bytes N]   (N: %ld..%ld, default %ld)\n",
		TEST_MIN_BYTES, TEST_MAX_BYTES, TEST_DEFAULT_BYTES);
	return 2;
}

int ctl_test_main(int argc, char **argv)
{
	const char *spec = NULL;
	long want = TEST_DEFAULT_BYTES;
	struct source_conf sc;
	struct sp80090b_result r;
	const struct src_driver *drv;
	char err[512];
	uint8_t *buf;
	void *st;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc) {
			if (conf_parse_long(argv[++i], TEST_MIN_BYTES, TEST_MAX_BYTES, 10, &want) <
			    0) {
				fprintf(stderr, "entropyctl test: --bytes %s: not in %ld..%ld\n",
					argv[i], TEST_MIN_BYTES, TEST_MAX_BYTES);
				return 2;
			}
		} else if (argv[i][0] != '-' && spec == NULL) {
			spec = argv[i];
		} else {
			return usage();
		}
	}
	if (spec == NULL) {
		return usage();
	}
	log_init("entropyctl", true, false);
	if (conf_parse_source(spec, 0, &sc, err, sizeof(err)) < 0) {
		fprintf(stderr, "entropyctl: %s\n", err);
		return 2;
	}
	drv = src_conf_driver(&sc, err, sizeof(err));
	st = drv ? src_open(drv, sc.arg, &sc.tty, err, sizeof(err)) : NULL;
	if (st == NULL) {
		if (drv != NULL) {
			fprintf(stderr, "entropyctl: source %s: %s\n", spec, err);
		} else {
			fprintf(stderr, "entropyctl: %s\n", err);
		}
		conf_source_free(&sc);
		return 1;
	}
	buf = malloc((size_t)want);
	if (buf == NULL) {
		fprintf(stderr, "entropyctl: out of memory\n");
	} else if (read_all(drv, st, spec, buf, (size_t)want) == 0) {
		if (sp80090b_assess(buf, (size_t)want, &r) < 0) {
			fprintf(stderr, "entropyctl: out of memory\n");
		} else {
			report(spec, (size_t)want, &r);
			rc = 0;
		}
	}
	free(buf);
	src_driver_close(drv, st);
	conf_source_free(&sc);
	return rc;
}
