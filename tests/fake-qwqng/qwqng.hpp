/* A fake of ComScire's libqwqng for entropyd's tests: the public API of libqwqng 1.4 (class
 * QWQNG and its status codes, written from the library's documented interface; none of the
 * vendor's code), with a deterministic byte stream and faults injected through environment
 * variables instead of a device. See qwqng.cpp for the variables. Not installed anywhere.
 *
 * Like the real header it includes <ftdi.h>: a build that finds the real qwqng.hpp needs
 * libftdi1's include directory, and so does one that finds this one. */
#ifndef FAKE_QWQNG_HPP
#define FAKE_QWQNG_HPP

#include <ftdi.h>

/* Status codes, as the real library defines them. */
#define S_OK 0x00000000L
#define QNG_S_OK 0x00044400L
#define QNG_E_GENERAL_FAILURE 0x80044401L
#define QNG_E_IO_ERROR 0x80044402L
#define QNG_E_IO_TIMEOUT 0x80044403L
#define QNG_E_IO_ARRAY_OVERSIZED 0x80044404L
#define QNG_E_STATS_EXCEPTION 0x80044406L
#define QNG_E_STATS_UNSUPPORTED 0x80044407L
#define QNG_E_DIAGX_UNSUPPORTED 0x80044408L
#define QNG_E_DEVICE_NOT_OPENED 0x8004440AL

/* Largest RandBytes() request: devices before generation 4, and generation 4 and later. */
#define FTDIDEVICE_MAX_ARRAY_SIZE_ 8192
#define FTDIDEVICE_FAST_MAX_ARRAY_SIZE_ 65536

class QWQNG
{
      public:
	/* Finds and opens the first device; errors go to the process-global status. */
	QWQNG();
	/* Former singleton accessor: now a new instance each time. */
	static QWQNG *Instance();
	~QWQNG();

	char *StatusString();
	char *DeviceID();
	int RandInt32(long *pVal);
	int RandUniform(double *pVal);
	int RandNormal(double *pVal);
	int RandBytes(char *pval, long length);
	int Clear();
	int Reset();
	int RuntimeInfo(float *pVal);
	int Diagnostics(char dxCode, char *dxInfo);

      private:
	QWQNG(const QWQNG &) = delete;
	QWQNG &operator=(const QWQNG &) = delete;

	long n_; /* construction number, for the call log */
	bool open_;
	char id_[32];
	char status_[64];
};

#endif
