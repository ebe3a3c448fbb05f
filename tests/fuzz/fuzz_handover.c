/* libFuzzer target for the handover codec (handover_codec.c): the input is what a new image
 * finds in the memfd a reload hands over. The header and every record are read as the new
 * image reads them; a record read as valid must hold only values in range, and must encode
 * back to a record that reads the same. */
#include "handover_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The vhost-user device records after the clients': a valid one is in range and encodes
 * back to the same. */
static void fuzz_vus(const uint8_t *data, size_t size, size_t off)
{
	static struct handover_vu_rec v, back;
	static uint8_t buf[HANDOVER_VU_REC_MAX + 4];
	char err[160];
	long count = handover_get_vu_count(data, size, &off, err, sizeof(err));

	for (long i = 0; i < count; i++) {
		int rc = handover_get_vu_rec(data, size, &off, &v, err, sizeof(err));
		size_t len = 0, at = 0;

		if (rc == -2) {
			break;
		}
		if (rc == 0 && (v.fd < 3 || v.nregions > VRING_MAX_REGIONS ||
				v.npart_fds > VU_MAX_FDS || v.partlen > HANDOVER_VU_PART_MAX ||
				handover_put_vu_rec(&v, buf, sizeof(buf), &len) < 0 ||
				handover_get_vu_rec(buf, len, &at, &back, err, sizeof(err)) != 0 ||
				back.partlen != v.partlen || strcmp(back.peer, v.peer) != 0)) {
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct handover_rec r, back;
	static uint8_t buf[HANDOVER_REC_MAX];
	char err[160];
	size_t off = HANDOVER_HEADER;
	long count = handover_get_header(data, size, err, sizeof(err));

	for (long i = 0; i < count; i++) {
		int rc = handover_get_rec(data, size, &off, &r, err, sizeof(err));
		size_t len = 0, at = 0;

		if (rc == -2) {
			return 0;
		}
		if (rc == 0) {
			if (r.fd < 3 || r.inlen > HANDOVER_IN_MAX || r.outlen > HANDOVER_OUT_MAX ||
			    r.nops > REQQ_SLOTS ||
			    handover_put_rec(&r, buf, sizeof(buf), &len) < 0 ||
			    handover_get_rec(buf, len, &at, &back, err, sizeof(err)) != 0 ||
			    memcmp(back.ops, r.ops, r.nops * sizeof(r.ops[0])) != 0 ||
			    strcmp(back.spec, r.spec) != 0 || back.inlen != r.inlen) {
				abort();
			}
		}
	}
	fuzz_vus(data, size, count >= 0 ? off : size);
	return 0;
}
