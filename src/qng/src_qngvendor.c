/* src_qngvendor: the `qngvendor` source kind, a ComScire QNG driven by the vendor's C++
 * library libqwqng (through the shim in qngvendor.cpp), so that owners who already use that
 * library keep working. The `qng` kind drives the same devices natively and does more
 * (several devices, a serial to choose one, status-checked blocks).
 *
 *   qngvendor        the first QNG the library finds (it takes no argument)
 *
 * libqwqng drives one device per process and keeps its errors in one process-global status
 * that only a fresh instance clears. So open() refuses a second qngvendor source, and every
 * failure is a failed read after which src.c closes the source (deleting the instance) and
 * opens a new one with backoff: the only full reset. The bytes then go through the start-up
 * test again like any re-opened source's.
 *
 * Built with the library only where meson found it (ENTROPYD_HAVE_QNGVENDOR). Without it
 * the kind still exists, and its open() says that entropyd was built without libqwqng. */
#include "../src_driver.h"

#include <stdio.h>

#ifdef ENTROPYD_HAVE_QNGVENDOR

#include "../log.h"
#include "qngvendor.h"

#include <stdatomic.h>

/* Set while an instance exists: the library's own limit is process-wide, so is this. */
static atomic_flag qngvendor_in_use = ATOMIC_FLAG_INIT;

static void *qngvendor_src_open(const char *arg, char *err, size_t errlen)
{
	struct qngvendor *h;

	if (atomic_flag_test_and_set(&qngvendor_in_use)) {
		snprintf(err, errlen,
			 "another qngvendor source already uses libqwqng, which drives one QNG per "
			 "process (the native qng source drives several)");
		return NULL;
	}
	h = qngvendor_open(err, errlen);
	if (h == NULL) {
		atomic_flag_clear(&qngvendor_in_use);
		return NULL;
	}
	log_info("qngvendor: libqwqng opened the QNG with serial %s", qngvendor_device_id(h));
	return h;
}

static long qngvendor_src_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	return qngvendor_read(st, buf, n, err, errlen);
}

static void qngvendor_src_close(void *st)
{
	qngvendor_close(st);
	atomic_flag_clear(&qngvendor_in_use);
}

#else

static void *qngvendor_src_open(const char *arg, char *err, size_t errlen)
{
	snprintf(err, errlen,
		 "entropyd was built without libqwqng, the ComScire vendor library (the native "
		 "qng source drives the same devices)");
	return NULL;
}

static long qngvendor_src_read(void *st, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	snprintf(err, errlen, "built without libqwqng");
	return -1;
}

#endif

const struct src_driver src_qngvendor_driver = {
    .kind = "qngvendor",
    .syntax = "qngvendor",
    .help = "a ComScire QNG through the vendor's libqwqng (builds made where it is installed)",
    .what = "hardware: ComScire QNG through the vendor's libqwqng",
    .needs_arg = false,
    .takes_arg = false,
    .open = qngvendor_src_open,
    .read = qngvendor_src_read,
#ifdef ENTROPYD_HAVE_QNGVENDOR /* without the library, open() never succeeds */
    .close = qngvendor_src_close,
#endif
    /* A status check holds bytes back for a while: longer than the usual deadline. */
    .stall_ms = 30000,
};
