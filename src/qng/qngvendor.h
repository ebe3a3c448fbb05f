/* qngvendor: a C interface to the ComScire vendor library libqwqng (C++), for owners of a
 * QNG who already use it. Only the few calls entropyd needs; no C++ exception ever crosses
 * it (qngvendor.cpp catches them all and reports them as errors).
 *
 * The vendor library drives one device per process and keeps its error state in one global
 * status that only a fresh instance (or its Reset()) clears: after any error, close the
 * handle and open a new one. */
#ifndef ENTROPYD_QNGVENDOR_H
#define ENTROPYD_QNGVENDOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes asked of the library per call: the limit of devices before generation 4. */
#define QNGVENDOR_READ_MAX 8192u

struct qngvendor;

/* Find, open and initialise the first QNG; NULL with the library's status in err. */
struct qngvendor *qngvendor_open(char *err, size_t errlen);
/* Up to n bytes (at most QNGVENDOR_READ_MAX per call): > 0, or -1 with the library's status
 * in err (nothing of a failed call is returned; every later call fails until a new open). */
long qngvendor_read(struct qngvendor *h, uint8_t *buf, size_t n, char *err, size_t errlen);
/* The open device's serial (QWR...), for log lines. */
const char *qngvendor_device_id(const struct qngvendor *h);
/* Close the device and delete the library's instance; h may be NULL. */
void qngvendor_close(struct qngvendor *h);

#ifdef __cplusplus
}
#endif

#endif
