/* qngvendor: the C shim over the ComScire vendor library libqwqng (class QWQNG in qwqng.hpp).
 *
 * The library reports errors through one process-global status, not by throwing: a
 * constructor that found no device, or could not initialise it, still returns an object.
 * Its status after a good open is QNG_S_OK, whose text (documented beside the code in
 * qwqng.hpp) StatusString() returns; anything else, or no device serial, is a failed open.
 * No C++ exception may reach C: every entry point catches them all and reports an error.
 * After any failed read the handle refuses further reads: the caller deletes the instance
 * and creates a new one, which is what clears the library's global error state. */
#include "qngvendor.h"

#include <qwqng.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string.h>

namespace
{

/* StatusString() after a successful open: the text of QNG_S_OK. */
const char ok_text[] = "QNG device reports success.";

/* The library's status text, never NULL, never throwing. */
const char *status_text(QWQNG *q)
{
	try {
		const char *s = q != nullptr ? q->StatusString() : nullptr;

		return s != nullptr && s[0] != '\0' ? s : "(no status text)";
	} catch (...) {
		return "(status text unavailable)";
	}
}

void report_exception(char *err, size_t errlen)
{
	try {
		throw;
	} catch (const std::exception &e) {
		snprintf(err, errlen, "libqwqng: C++ exception: %s", e.what());
	} catch (...) {
		snprintf(err, errlen, "libqwqng: C++ exception of an unknown type");
	}
}

} // namespace

struct qngvendor {
	QWQNG *q;
	bool failed; /* a read failed: the library's status stays bad until a new instance */
	char id[32];
};

void qngvendor_close(struct qngvendor *h)
{
	if (h == nullptr) {
		return;
	}
	/* ~QWQNG() stops the stream and closes the device. A destructor cannot throw out
	 * (C++11 makes it noexcept), so there is nothing to catch here. */
	delete h->q;
	delete h;
}

struct qngvendor *qngvendor_open(char *err, size_t errlen)
{
	struct qngvendor *h = nullptr;

	try {
		h = new qngvendor();
		h->q = new QWQNG();
		const char *id = h->q->DeviceID();
		const char *st = status_text(h->q);

		if (strcmp(st, ok_text) != 0) {
			snprintf(err, errlen, "libqwqng: %s", st);
		} else if (id == nullptr || id[0] == '\0') {
			snprintf(err, errlen, "libqwqng: reports success but no device serial");
		} else {
			snprintf(h->id, sizeof(h->id), "%s", id);
			return h;
		}
	} catch (...) {
		report_exception(err, errlen);
	}
	qngvendor_close(h);
	return nullptr;
}

long qngvendor_read(struct qngvendor *h, uint8_t *buf, size_t n, char *err, size_t errlen)
{
	long len = n < QNGVENDOR_READ_MAX ? (long)n : (long)QNGVENDOR_READ_MAX;

	if (h->failed) {
		snprintf(err, errlen,
			 "libqwqng: an earlier read failed (the device needs a new open)");
		return -1;
	}
	if (len == 0) {
		return 0;
	}
	try {
		int rc = h->q->RandBytes(reinterpret_cast<char *>(buf), len);

		if (rc == S_OK) {
			return len;
		}
		snprintf(err, errlen, "libqwqng: %s (status 0x%08x)", status_text(h->q),
			 (unsigned)rc);
	} catch (...) {
		report_exception(err, errlen);
	}
	/* Whatever the failed call left in buf is not the device's checked output. */
	explicit_bzero(buf, (size_t)len);
	h->failed = true;
	return -1;
}

const char *qngvendor_device_id(const struct qngvendor *h)
{
	return h->id;
}
