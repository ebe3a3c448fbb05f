/* A fake libqwqng (see qwqng.hpp) for testing entropyd's qngvendor source without the
 * vendor library or a device. It behaves as the real library is documented to: one device
 * per process (a second instance finds it "already in use"), errors kept in one
 * process-global status that stays bad (the first error wins) until a new instance opens
 * the device or Reset() re-initialises it, RandBytes() limited to 8192 bytes per call for
 * serials QWR1..QWR6 (65536 from QWR7).
 *
 * The device's output is a deterministic stream: byte k is byte k % 8 (little-endian) of
 * splitmix64 output number k / 8 for the seed, i.e. of
 *   z = seed + (k / 8 + 1) * 0x9E3779B97F4A7C15, then z ^= z >> 30, z *= 0xBF58476D1CE4E5B9,
 *   z ^= z >> 27, z *= 0x94D049BB133111EB, z ^= z >> 31   (all mod 2^64).
 * The position is process-global: a new instance continues where the last one stopped, as
 * a device keeps producing. A failed read consumes its length of the stream and fills the
 * caller's buffer from the "bad" stream (the same generator with seed ^ 0x0BADBADBADBADBAD),
 * so a consumer that passes on bytes of a failed read can be caught.
 *
 * Environment (read once, at the first call):
 *   FAKE_QWQNG_SEED=N            stream seed (default 1)
 *   FAKE_QWQNG_SERIAL=S          device serial (default QWR4FAKE0001)
 *   FAKE_QWQNG_FAIL_OPENS=LIST   constructions that fail: numbers from 0 (comma-separated),
 *                                or "all"
 *   FAKE_QWQNG_OPEN_FAIL_CODE=C  their status: QNG_E_DEVICE_NOT_OPENED (default; no device
 *                                found, DeviceID() empty) or another code (device found,
 *                                initialisation failed, DeviceID() set)
 *   FAKE_QWQNG_THROW_OPENS=LIST  constructions that throw std::runtime_error
 *   FAKE_QWQNG_FAIL_AT=LIST      stream offsets: the RandBytes() call that would deliver that
 *                                byte fails instead (once per offset) ...
 *   FAKE_QWQNG_FAIL_CODE=C       ... with this status (default QNG_E_IO_TIMEOUT)
 *   FAKE_QWQNG_THROW_AT=LIST     stream offsets: that call throws std::runtime_error instead
 *   FAKE_QWQNG_LOG=PATH          append one line per call:
 *                                  open I ok SERIAL | open I fail CODE | open I busy |
 *                                  open I throw | close I | reset I CODE | clear I CODE |
 *                                  read I LEN POS ok|fail CODE|throw|oversized|sticky CODE
 *                                (I: the instance's construction number; POS: stream offset
 *                                of the call's first byte) */
#include "qwqng.hpp"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

namespace
{

std::mutex lock;
bool configured;
uint64_t seed = 1;
char serial[32] = "QWR4FAKE0001";
bool fail_all_opens;
std::set<long> fail_opens, throw_opens;
long open_fail_code = QNG_E_DEVICE_NOT_OPENED;
std::set<uint64_t> fail_at, throw_at;
long fail_code = QNG_E_IO_TIMEOUT;
FILE *logf;

long status = QNG_E_DEVICE_NOT_OPENED;
uint64_t pos;
long constructions;
int open_instances;

const uint64_t bad_seed_xor = 0x0BADBADBADBADBADull;

uint64_t splitmix(uint64_t s, uint64_t word)
{
	uint64_t z = s + (word + 1) * 0x9E3779B97F4A7C15ull;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

void fill(char *buf, long len, uint64_t from, uint64_t s)
{
	for (long i = 0; i < len; i++) {
		uint64_t k = from + (uint64_t)i;

		buf[i] = (char)(uint8_t)(splitmix(s, k / 8) >> (8 * (k % 8)));
	}
}

const char *text_of(long code)
{
	switch (code) {
	case QNG_S_OK:
		return "QNG device reports success.";
	case QNG_E_IO_ERROR:
		return "QNG I/O error.";
	case QNG_E_IO_TIMEOUT:
		return "QNG I/O request has timed out.";
	case QNG_E_IO_ARRAY_OVERSIZED:
		return "QNG read array size exceeds max size.";
	case QNG_E_DEVICE_NOT_OPENED:
		return "QNG device not found or already in use.";
	case QNG_E_STATS_EXCEPTION:
		return "QNG test statistics exception.";
	case QNG_E_STATS_UNSUPPORTED:
		return "QNG stats not supported with this device.";
	case QNG_E_DIAGX_UNSUPPORTED:
		return "QNG diagnostics not supported with this device.";
	default:
		return "QNG general error.";
	}
}

/* The first error stays until success, except the two that always take over. */
void set_status(long code)
{
	if (status != QNG_S_OK && code != QNG_S_OK && code != QNG_E_STATS_EXCEPTION &&
	    code != QNG_E_DEVICE_NOT_OPENED) {
		return;
	}
	status = code;
}

int result()
{
	return status == QNG_S_OK ? (int)S_OK : (int)status;
}

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char *fmt, ...)
{
	va_list ap;

	if (logf == nullptr) {
		return;
	}
	va_start(ap, fmt);
	vfprintf(logf, fmt, ap);
	va_end(ap);
	fputc('\n', logf);
	fflush(logf);
}

void parse_list(const char *name, std::set<uint64_t> &out)
{
	const char *v = getenv(name);

	while (v != nullptr && *v != '\0') {
		char *end;

		errno = 0;
		out.insert(strtoull(v, &end, 0));
		if (errno != 0 || end == v || (*end != ',' && *end != '\0')) {
			fprintf(stderr, "fake libqwqng: bad %s\n", name);
			abort();
		}
		v = *end == ',' ? end + 1 : end;
	}
}

long parse_code(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v != nullptr && *v != '\0' ? (long)strtoul(v, nullptr, 0) : dflt;
}

void configure()
{
	std::set<uint64_t> opens;
	const char *v;

	if (configured) {
		return;
	}
	configured = true;
	if ((v = getenv("FAKE_QWQNG_SEED")) != nullptr && *v != '\0') {
		seed = strtoull(v, nullptr, 0);
	}
	if ((v = getenv("FAKE_QWQNG_SERIAL")) != nullptr && *v != '\0') {
		snprintf(serial, sizeof(serial), "%s", v);
	}
	v = getenv("FAKE_QWQNG_FAIL_OPENS");
	if (v != nullptr && strcmp(v, "all") == 0) {
		fail_all_opens = true;
	} else {
		parse_list("FAKE_QWQNG_FAIL_OPENS", opens);
		fail_opens.insert(opens.begin(), opens.end());
	}
	opens.clear();
	parse_list("FAKE_QWQNG_THROW_OPENS", opens);
	throw_opens.insert(opens.begin(), opens.end());
	open_fail_code = parse_code("FAKE_QWQNG_OPEN_FAIL_CODE", QNG_E_DEVICE_NOT_OPENED);
	parse_list("FAKE_QWQNG_FAIL_AT", fail_at);
	parse_list("FAKE_QWQNG_THROW_AT", throw_at);
	fail_code = parse_code("FAKE_QWQNG_FAIL_CODE", QNG_E_IO_TIMEOUT);
	if ((v = getenv("FAKE_QWQNG_LOG")) != nullptr && *v != '\0') {
		logf = fopen(v, "a");
	}
}

/* Takes the first offset of set in [from, from + len), if any. */
bool take(std::set<uint64_t> &set, uint64_t from, long len)
{
	auto it = set.lower_bound(from);

	if (it == set.end() || *it >= from + (uint64_t)len) {
		return false;
	}
	set.erase(it);
	return true;
}

long max_request()
{
	return serial[3] >= '7' ? FTDIDEVICE_FAST_MAX_ARRAY_SIZE_ : FTDIDEVICE_MAX_ARRAY_SIZE_;
}

} // namespace

QWQNG::QWQNG() : n_(0), open_(false), id_(), status_()
{
	std::lock_guard<std::mutex> g(lock);
	long n;

	configure();
	n = n_ = constructions++;
	if (throw_opens.count((uint64_t)n) != 0) {
		say("open %ld throw", n);
		throw std::runtime_error(
		    "fake libqwqng: constructor throws (FAKE_QWQNG_THROW_OPENS)");
	}
	if (open_instances > 0) {
		set_status(QNG_E_DEVICE_NOT_OPENED);
		say("open %ld busy", n);
		return;
	}
	status = QNG_S_OK; /* what finding and opening a device does to the global status */
	if (fail_all_opens || fail_opens.count((uint64_t)n) != 0) {
		set_status(open_fail_code);
		if (open_fail_code != QNG_E_DEVICE_NOT_OPENED) {
			snprintf(id_, sizeof(id_), "%s", serial);
		}
		say("open %ld fail 0x%08lx", n, open_fail_code);
		return;
	}
	snprintf(id_, sizeof(id_), "%s", serial);
	open_ = true;
	open_instances++;
	say("open %ld ok %s", n, serial);
}

QWQNG *QWQNG::Instance()
{
	return new QWQNG();
}

QWQNG::~QWQNG()
{
	std::lock_guard<std::mutex> g(lock);

	if (open_) {
		open_instances--;
		/* Closing leaves the status saying there is no open device. */
		set_status(QNG_E_DEVICE_NOT_OPENED);
	}
	say("close %ld", n_);
}

char *QWQNG::StatusString()
{
	std::lock_guard<std::mutex> g(lock);

	snprintf(status_, sizeof(status_), "%s", text_of(status));
	return status_;
}

char *QWQNG::DeviceID()
{
	return id_;
}

int QWQNG::RandBytes(char *pval, long length)
{
	std::lock_guard<std::mutex> g(lock);
	long n = n_;
	uint64_t from = pos;

	if (length < 0 || length > max_request()) {
		set_status(QNG_E_IO_ARRAY_OVERSIZED);
		say("read %ld %ld %llu oversized", n, length, (unsigned long long)from);
		return result();
	}
	if (length == 0) {
		return S_OK;
	}
	pos += (uint64_t)length;
	if (!open_ || status != QNG_S_OK) {
		if (!open_) {
			set_status(QNG_E_DEVICE_NOT_OPENED);
		}
		fill(pval, length, from, seed ^ bad_seed_xor);
		say("read %ld %ld %llu sticky 0x%08lx", n, length, (unsigned long long)from,
		    status);
		return result();
	}
	if (take(throw_at, from, length)) {
		say("read %ld %ld %llu throw", n, length, (unsigned long long)from);
		throw std::runtime_error("fake libqwqng: RandBytes throws (FAKE_QWQNG_THROW_AT)");
	}
	if (take(fail_at, from, length)) {
		fill(pval, length, from, seed ^ bad_seed_xor);
		set_status(fail_code);
		say("read %ld %ld %llu fail 0x%08lx", n, length, (unsigned long long)from,
		    fail_code);
		return result();
	}
	fill(pval, length, from, seed);
	say("read %ld %ld %llu ok", n, length, (unsigned long long)from);
	return S_OK;
}

int QWQNG::RandInt32(long *pVal)
{
	int32_t v = 0;
	int rc = RandBytes(reinterpret_cast<char *>(&v), 4);

	*pVal = v;
	return rc;
}

int QWQNG::RandUniform(double *pVal)
{
	uint64_t v = 0;
	int rc = RandBytes(reinterpret_cast<char *>(&v), 6);

	*pVal = (double)v / 281474976710656.0;
	return rc;
}

int QWQNG::RandNormal(double *pVal)
{
	double u1, u2;
	int rc = RandUniform(&u1);

	if (rc == S_OK) {
		rc = RandUniform(&u2);
	}
	*pVal = sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2);
	return rc;
}

int QWQNG::Clear()
{
	std::lock_guard<std::mutex> g(lock);

	say("clear %ld 0x%08lx", n_, status);
	return result();
}

int QWQNG::Reset()
{
	std::lock_guard<std::mutex> g(lock);

	set_status(open_ ? QNG_S_OK : QNG_E_DEVICE_NOT_OPENED);
	say("reset %ld 0x%08lx", n_, status);
	return result();
}

int QWQNG::RuntimeInfo(float *pVal)
{
	std::lock_guard<std::mutex> g(lock);

	(void)pVal;
	set_status(QNG_E_STATS_UNSUPPORTED);
	return result();
}

int QWQNG::Diagnostics(char dxCode, char *dxInfo)
{
	std::lock_guard<std::mutex> g(lock);

	(void)dxCode;
	(void)dxInfo;
	set_status(QNG_E_DIAGX_UNSUPPORTED);
	return result();
}
