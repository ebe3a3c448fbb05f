/* src_detect: the default source and --list-sources. Both probe the machine the way
 * --source would, by opening the candidates through their drivers; neither starts a thread.
 * The default prefers a hardware source: /dev/hwrng if it delivers, then the CPU's
 * instructions, and only then the kernel's generator, which it logs as no hardware. */
#include "src_detect.h"

#include "src.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define HWRNG_PATH "/dev/hwrng"

/* The CPU instruction sources, tried in this order after /dev/hwrng. */
static const struct src_driver *const cpu_drivers[] = {&src_rdseed_driver, &src_darn_driver};

/* Try /dev/hwrng without blocking for more than about two seconds. */
static bool hwrng_delivers(const char *path, char *why, size_t whylen)
{
	uint8_t probe[16];
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return false;
	}
	for (int i = 0; i < 200; i++) {
		ssize_t r = read(fd, probe, sizeof(probe));

		if (r > 0) {
			explicit_bzero(probe, sizeof(probe));
			close(fd);
			return true;
		}
		if (r < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(why, whylen, "%s: %s", path, strerror(errno));
			close(fd);
			return false;
		}
		usleep(10000);
	}
	close(fd);
	snprintf(why, whylen, "%s: delivered nothing within 2 s", path);
	return false;
}

/* True if drv opens without an argument on this machine (it is closed again at once). */
static bool opens(const struct src_driver *drv)
{
	char err[256];
	void *st = drv->open(NULL, err, sizeof(err));

	if (st == NULL) {
		return false;
	}
	src_driver_close(drv, st);
	return true;
}

int src_detect_add_default(struct sources *s, char *err, size_t errlen)
{
	char why_hwrng[160], note[512];
	struct source_conf c = {.min_entropy = 4.0, .prio = 0, .stall_ms = -1, .note = note};

	if (hwrng_delivers(HWRNG_PATH, why_hwrng, sizeof(why_hwrng))) {
		c.spec = "file:" HWRNG_PATH;
		c.kind = "file";
		c.arg = HWRNG_PATH;
		snprintf(note, sizeof(note),
			 "no --source given: using file:" HWRNG_PATH
			 ", the kernel's hardware RNG, which delivers");
		return sources_add(s, &c, err, errlen);
	}
	for (size_t i = 0; i < sizeof(cpu_drivers) / sizeof(cpu_drivers[0]); i++) {
		if (opens(cpu_drivers[i])) {
			c.spec = c.kind = (char *)cpu_drivers[i]->kind;
			snprintf(note, sizeof(note), "no --source given: using %s (%s)", c.kind,
				 why_hwrng);
			return sources_add(s, &c, err, errlen);
		}
	}
	c.spec = c.kind = (char *)src_getrandom_driver.kind;
	snprintf(note, sizeof(note),
		 "no --source given and no hardware source found (%s; the CPU has neither RDSEED "
		 "nor DARN): using getrandom, the kernel's generator, which is not a hardware "
		 "source",
		 why_hwrng);
	return sources_add(s, &c, err, errlen);
}

/* One candidate for --list-sources: try to open it as --source would, and say why not. */
static void list_one(FILE *out, const struct src_driver *drv, const char *arg, const char *label,
		     const char *note)
{
	char err[256] = "";
	void *st = drv->open(arg, err, sizeof(err));

	if (st != NULL) {
		src_driver_close(drv, st);
		fprintf(out, "  usable    %-28s %s%s%s\n", label, drv->what, note ? "; " : "",
			note ? note : "");
	} else {
		fprintf(out, "  unusable  %-28s %s\n", label, err);
	}
}

/* The first line of a sysfs file, or "?" */
static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	snprintf(buf, len, "?");
	if (f != NULL) {
		if (fgets(buf, (int)len, f) != NULL) {
			buf[strcspn(buf, "\n")] = '\0';
		}
		fclose(f);
	}
}

void src_detect_list(FILE *out)
{
	char cur[128], avail[256], why[160], note[512];
	DIR *d;

	fprintf(out, "Sources on this machine (in the order entropyd picks a default):\n");
	read_line("/sys/class/misc/hw_random/rng_current", cur, sizeof(cur));
	read_line("/sys/class/misc/hw_random/rng_available", avail, sizeof(avail));
	if (access(HWRNG_PATH, F_OK) != 0) {
		fprintf(out, "  unusable  %-28s no such device (no hardware RNG driver loaded)\n",
			"file:" HWRNG_PATH);
	} else if (!hwrng_delivers(HWRNG_PATH, why, sizeof(why))) {
		fprintf(out, "  unusable  %-28s %s (driver: %s)\n", "file:" HWRNG_PATH, why, cur);
	} else {
		snprintf(note, sizeof(note), "kernel hardware RNG driver %s (available: %s)", cur,
			 avail);
		list_one(out, &src_file_driver, HWRNG_PATH, "file:" HWRNG_PATH, note);
	}
	/* Every kind that needs no argument, in the table's order. */
	for (size_t i = 0; src_drivers[i] != NULL; i++) {
		if (!src_drivers[i]->needs_arg) {
			list_one(out, src_drivers[i], NULL, src_drivers[i]->kind, NULL);
		}
	}
	/* USB serial generators (TrueRNG, OneRNG, …) appear as ttys with stable names. */
	d = opendir("/dev/serial/by-id");
	if (d != NULL) {
		struct dirent *e;

		while ((e = readdir(d)) != NULL) {
			char path[512], label[600];

			if (e->d_name[0] == '.') {
				continue;
			}
			snprintf(path, sizeof(path), "/dev/serial/by-id/%s", e->d_name);
			snprintf(label, sizeof(label), "file:%s", path);
			list_one(out, &src_file_driver, path, label,
				 "a USB serial device: if it is a TRNG, use it with file:");
		}
		closedir(d);
	} else {
		fprintf(out, "  (no USB serial devices: /dev/serial/by-id does not exist)\n");
	}
}
