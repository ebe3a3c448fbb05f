/* qng_ftdi: the QNG byte pipe over USB with libftdi1.
 *
 * A QNG is an FTDI chip (0403:6001 for PQ4000KU and older, 0403:6014 for later models);
 * 0403:6001 is also every FTDI serial adapter, so a device is chosen only by its USB serial
 * number ("QWR..."), never by VID:PID alone. Each context has its own libftdi (and so its
 * own libusb) context: several QNGs can be open at once. Enumeration, opening (libftdi
 * detaches the ftdi_sio kernel driver itself) and the chip's set-up go through libftdi;
 * data moves in libusb bulk transfers on libftdi's handle (see ftdi_read()). */
#include "qng.h"

#include <errno.h>
#include <ftdi.h>
#include <libusb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FTDI_MAX_DEVS 32
#define FTDI_WRITE_TIMEOUT_MS 1000
#define FTDI_CHUNK_MAX 65536

struct qng_ftdi {
	struct ftdi_context *ftdi;
	int latency_ms;
	int gen;
	size_t chunk;	   /* bytes asked of one bulk transfer */
	uint8_t *rbuf;	   /* FTDI_CHUNK_MAX: one transfer's payload ... */
	size_t rpos, rlen; /* ... of which these bytes are not handed out yet */
	char name[96];
	char error[160];
};

void *qng_ftdi_new(int latency_ms)
{
	struct qng_ftdi *f = calloc(1, sizeof(*f));

	if (f == NULL || (f->rbuf = malloc(FTDI_CHUNK_MAX)) == NULL) {
		free(f);
		return NULL;
	}
	f->latency_ms = latency_ms;
	return f;
}

size_t qng_ftdi_strip_status(uint8_t *p, size_t len, size_t packet)
{
	size_t out = 0;

	for (size_t off = 0; off < len; off += packet) {
		size_t end = len - off > packet ? off + packet : len;

		if (end - off > 2) {
			memmove(p + out, p + off + 2, end - off - 2);
			out += end - off - 2;
		}
	}
	return out;
}

static void ftdi_close_dev(void *ctx)
{
	struct qng_ftdi *f = ctx;

	if (f->ftdi != NULL) {
		ftdi_usb_close(f->ftdi);
		ftdi_free(f->ftdi);
		f->ftdi = NULL;
	}
	explicit_bzero(f->rbuf, FTDI_CHUNK_MAX);
	f->rpos = f->rlen = 0;
}

static void ftdi_ctx_free(void *ctx)
{
	struct qng_ftdi *f = ctx;

	if (f != NULL) {
		ftdi_close_dev(f);
		free(f->rbuf);
		free(f);
	}
}

/* The device node libusb opens, e.g. /dev/bus/usb/001/004. */
static void usb_node(libusb_device *dev, char *out, size_t outlen)
{
	snprintf(out, outlen, "/dev/bus/usb/%03u/%03u", libusb_get_bus_number(dev),
		 libusb_get_device_address(dev));
}

/* The serial from sysfs, readable even when the device node is not. */
static void sysfs_serial(libusb_device *dev, char *out, size_t outlen)
{
	uint8_t ports[8];
	int np = libusb_get_port_numbers(dev, ports, (int)sizeof(ports));
	char path[128];
	size_t len;
	FILE *fp;

	out[0] = '\0';
	if (np <= 0) {
		return;
	}
	len = (size_t)snprintf(path, sizeof(path), "/sys/bus/usb/devices/%u-",
			       libusb_get_bus_number(dev));
	for (int i = 0; i < np && len < sizeof(path); i++) {
		len += (size_t)snprintf(path + len, sizeof(path) - len, "%s%u", i ? "." : "",
					ports[i]);
	}
	if (len >= sizeof(path) - sizeof("/serial")) {
		return;
	}
	strcat(path, "/serial");
	fp = fopen(path, "re");
	if (fp == NULL) {
		return;
	}
	if (fgets(out, (int)outlen, fp) == NULL) {
		out[0] = '\0';
	}
	out[strcspn(out, "\r\n")] = '\0';
	fclose(fp);
}

/* 0 if the device node can be opened for reading and writing, else the errno. */
static int node_access(libusb_device *dev, char *node, size_t nodelen)
{
	usb_node(dev, node, nodelen);
	return access(node, R_OK | W_OK) == 0 ? 0 : errno;
}

#define QNG_UDEV_HINT                                                                              \
	"permission denied: install entropyd's udev rule for QNGs (src/qng/"                       \
	"60-entropyd-qng.rules: ATTRS{serial}==\"QWR*\", GROUP=\"entropyd\"), run entropyd "       \
	"as a user in that group (--user entropyd), and re-plug the device"

static void setup_error(struct qng_ftdi *f, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s failed: %s", f->name, what, ftdi_get_error_string(f->ftdi));
}

/* Generation-specific settings (facts/qng-device.md, "FTDI settings"). */
static int setup(struct qng_ftdi *f, char *err, size_t errlen)
{
	f->ftdi->usb_write_timeout = FTDI_WRITE_TIMEOUT_MS;
	if (ftdi_set_latency_timer(f->ftdi, (unsigned char)f->latency_ms) < 0) {
		setup_error(f, "setting the latency timer", err, errlen);
		return -1;
	}
	if (f->gen >= 4) {
		if (ftdi_set_bitmode(f->ftdi, 0xff, BITMODE_RESET) < 0) {
			setup_error(f, "resetting the bit mode", err, errlen);
			return -1;
		}
		usleep(10000);
		if (ftdi_set_bitmode(f->ftdi, 0xff, BITMODE_SYNCFF) < 0) {
			setup_error(f, "setting synchronous FIFO mode", err, errlen);
			return -1;
		}
		if (ftdi_setflowctrl(f->ftdi, SIO_RTS_CTS_HS) < 0) {
			setup_error(f, "setting RTS/CTS flow control", err, errlen);
			return -1;
		}
	}
	f->chunk = f->gen >= 4 ? FTDI_CHUNK_MAX : 512;
	if (ftdi_tcioflush(f->ftdi) < 0) {
		setup_error(f, "flushing the chip's buffers", err, errlen);
		return -1;
	}
	return 0;
}

static int open_dev(struct qng_ftdi *f, libusb_device *dev, const char *serial, char *err,
		    size_t errlen)
{
	char node[40];
	int rc, e;

	snprintf(f->name, sizeof(f->name), "%s", serial);
	f->gen = qng_generation(serial);
	rc = ftdi_usb_open_dev(f->ftdi, dev);
	if (rc == 0) {
		return setup(f, err, errlen);
	}
	e = node_access(dev, node, sizeof(node));
	if (rc == -4 && (e == EACCES || e == EPERM)) {
		snprintf(err, errlen, "QNG %s at %s: %s", serial, node, QNG_UDEV_HINT);
	} else if (rc == -4 && e != 0) {
		snprintf(err, errlen, "QNG %s at %s: cannot open: %s", serial, node, strerror(e));
	} else if (rc == -8) {
		snprintf(err, errlen,
			 "QNG %s at %s: cannot detach the ftdi_sio kernel driver "
			 "(permission denied): use the udev rule, or unbind ftdi_sio from it",
			 serial, node);
	} else if (rc == -3 || rc == -5) {
		snprintf(err, errlen,
			 "QNG %s at %s is busy: another program holds it (%s); only "
			 "one program at a time can use a QNG",
			 serial, node, ftdi_get_error_string(f->ftdi));
	} else {
		snprintf(err, errlen, "QNG %s at %s: cannot open: %s (libftdi %d)", serial, node,
			 ftdi_get_error_string(f->ftdi), rc);
	}
	return -1;
}

static int ftdi_open(void *ctx, const char *serial, char *err, size_t errlen)
{
	static const int pids[] = {0x6001, 0x6014};
	struct qng_ftdi *f = ctx;
	struct ftdi_device_list *lists[2] = {NULL, NULL};
	struct qng_usb_id ids[FTDI_MAX_DEVS];
	libusb_device *devs[FTDI_MAX_DEVS];
	size_t n = 0;
	int pick, rc = -1;

	ftdi_close_dev(f);
	f->error[0] = '\0';
	f->ftdi = ftdi_new();
	if (f->ftdi == NULL) {
		snprintf(err, errlen, "cannot initialise libftdi (libusb)");
		return -1;
	}
	for (size_t l = 0; l < 2; l++) {
		if (ftdi_usb_find_all(f->ftdi, &lists[l], 0x0403, pids[l]) < 0) {
			snprintf(err, errlen, "cannot list USB devices: %s",
				 ftdi_get_error_string(f->ftdi));
			goto out;
		}
		for (struct ftdi_device_list *d = lists[l]; d != NULL && n < FTDI_MAX_DEVS;
		     d = d->next) {
			struct qng_usb_id *id = &ids[n];
			char node[40];

			memset(id, 0, sizeof(*id));
			id->vid = 0x0403;
			id->pid = (uint16_t)pids[l];
			devs[n++] = d->dev;
			if (ftdi_usb_get_strings(f->ftdi, d->dev, NULL, 0, NULL, 0, id->serial,
						 (int)sizeof(id->serial)) == 0) {
				continue;
			}
			/* ftdi_usb_get_strings() may leave the handle open on some errors. */
			if (f->ftdi->usb_dev != NULL) {
				libusb_close(f->ftdi->usb_dev);
				f->ftdi->usb_dev = NULL;
			}
			sysfs_serial(d->dev, id->serial, sizeof(id->serial));
			int e = node_access(d->dev, node, sizeof(node));

			snprintf(id->note, sizeof(id->note), "(cannot open %s: %s)", node,
				 e != 0 ? strerror(e) : "USB string request failed");
		}
	}
	pick = qng_pick_device(ids, n, serial, err, errlen);
	if (pick >= 0) {
		rc = open_dev(f, devs[pick], ids[pick].serial, err, errlen);
	}
out:
	ftdi_list_free(&lists[0]);
	ftdi_list_free(&lists[1]);
	if (rc < 0) {
		ftdi_free(f->ftdi);
		f->ftdi = NULL;
	}
	return rc;
}

static void usb_error(struct qng_ftdi *f, const char *what, int rc)
{
	if (rc == LIBUSB_ERROR_NO_DEVICE) {
		snprintf(f->error, sizeof(f->error), "%s: the device was unplugged", what);
	} else {
		snprintf(f->error, sizeof(f->error), "%s: %s", what, libusb_error_name(rc));
	}
}

static int ftdi_write(void *ctx, const uint8_t *b, size_t n)
{
	struct qng_ftdi *f = ctx;
	int done = 0;
	int rc = libusb_bulk_transfer(f->ftdi->usb_dev, (unsigned char)f->ftdi->in_ep,
				      (unsigned char *)b, (int)n, &done, FTDI_WRITE_TIMEOUT_MS);

	if (rc < 0 || done != (int)n) {
		usb_error(f, "USB write", rc < 0 ? rc : LIBUSB_ERROR_TIMEOUT);
		return -1;
	}
	return 0;
}

/* Bulk transfers are made here rather than with ftdi_read_data(), which, asked for more
 * than one transfer brings, waits for a further transfer and on its timeout reports an
 * error and drops what it had: a real chip answers every latency period (with its two
 * status bytes only, when it has no data), but an FTDI chip emulated by QEMU's usb-serial
 * answers nothing until it has data. Here one transfer's payload is all a read waits for. */
static long ftdi_read(void *ctx, uint8_t *b, size_t n, int timeout_ms)
{
	struct qng_ftdi *f = ctx;
	long deadline = qng_now_ms() + timeout_ms;
	size_t packet = f->ftdi->max_packet_size > 2 ? f->ftdi->max_packet_size : 64;
	size_t m;

	while (f->rlen == 0) {
		long left = deadline - qng_now_ms();
		int got = 0;
		int rc =
		    libusb_bulk_transfer(f->ftdi->usb_dev, (unsigned char)f->ftdi->out_ep, f->rbuf,
					 (int)f->chunk, &got, left < 1 ? 1 : (unsigned)left);

		if (rc < 0 && rc != LIBUSB_ERROR_TIMEOUT) {
			usb_error(f, "USB read", rc);
			return -1;
		}
		f->rpos = 0;
		f->rlen = qng_ftdi_strip_status(f->rbuf, got > 0 ? (size_t)got : 0, packet);
		if (f->rlen == 0 && qng_now_ms() >= deadline) {
			return 0;
		}
	}
	m = n < f->rlen ? n : f->rlen;
	memcpy(b, f->rbuf + f->rpos, m);
	explicit_bzero(f->rbuf + f->rpos, m);
	f->rpos += m;
	f->rlen -= m;
	return (long)m;
}

static const char *ftdi_name(void *ctx)
{
	return ((struct qng_ftdi *)ctx)->name;
}

static const char *ftdi_error(void *ctx)
{
	struct qng_ftdi *f = ctx;

	return f->error[0] ? f->error : NULL;
}

const struct qng_pipe_ops qng_ftdi_ops = {
    .open = ftdi_open,
    .write = ftdi_write,
    .read = ftdi_read,
    .close = ftdi_close_dev,
    .name = ftdi_name,
    .error = ftdi_error,
    .free = ftdi_ctx_free,
};
