/* drbg_seed: the DRBG's parent, a seed source of our own (an OpenSSL provider registered in a
 * library context of its own) that supplies, as entropy, exactly the bytes staged before a
 * (re)seed and nothing else: no operating-system entropy reaches the DRBG. Each staged seed
 * is handed over once. Used by drbg.c only. */
#ifndef ENTROPYD_DRBG_SEED_H
#define ENTROPYD_DRBG_SEED_H

#include <openssl/evp.h>
#include <openssl/provider.h>
#include <stddef.h>
#include <stdint.h>

/* A library context with the default provider and the seed source loaded (prov), and a
 * seed source instance in it (*parent); -1 on failure (all freed). */
int drbg_seed_open(OSSL_LIB_CTX **lib, OSSL_PROVIDER *prov[2], EVP_RAND_CTX **parent);
/* Free what drbg_seed_open made (the DRBG on top of parent first). */
void drbg_seed_close(OSSL_LIB_CTX *lib, OSSL_PROVIDER *prov[2], EVP_RAND_CTX *parent);
/* Stage buf[0..n) (kept by the caller until the next seed) as the next seed to hand over;
 * -1 on failure. */
int drbg_seed_stage(EVP_RAND_CTX *parent, const uint8_t *buf, size_t n);
/* Seeds the source handed over so far. */
uint64_t drbg_seed_handed(EVP_RAND_CTX *parent);

#endif
