/* drbg_seed: see drbg_seed.h. The seed source implements the few provider-rand(7)
 * functions a DRBG's parent needs: get_seed hands over the staged bytes (refusing when none
 * are staged, so a reseed OpenSSL would start on its own fails instead of using anything
 * else), clear_seed wipes them, and strength 256 lets an AES-256 CTR-DRBG sit on top. Its
 * generate refuses: it is a seed source, never a generator. */
#include "drbg_seed.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <stdlib.h>
#include <string.h>

#define SEED_PROVIDER "entropyd-seed"
#define SEED_RAND "ENTROPYD-SEED"
#define SEED_PARAM_STAGE "entropyd-stage"
#define SEED_PARAM_HANDED "entropyd-handed"

struct seedsrc {
	unsigned char *staged; /* the caller's buffer, or NULL when nothing is staged */
	size_t len;
	uint64_t handed;
};

static void *seed_newctx(void *provctx, void *parent, const OSSL_DISPATCH *parent_calls)
{
	return parent == NULL ? calloc(1, sizeof(struct seedsrc)) : NULL;
}

static void seed_freectx(void *vctx)
{
	free(vctx);
}

static int seed_instantiate(void *vctx, unsigned int strength, int prediction_resistance,
			    const unsigned char *pstr, size_t pstr_len, const OSSL_PARAM params[])
{
	return 1;
}

static int seed_uninstantiate(void *vctx)
{
	return 1;
}

static int seed_generate(void *vctx, unsigned char *out, size_t outlen, unsigned int strength,
			 int prediction_resistance, const unsigned char *adin, size_t adinlen)
{
	return 0;
}

static int seed_lock(void *vctx)
{
	return 1; /* one parent per DRBG, both used by one thread */
}

static void seed_unlock(void *vctx)
{
}

static size_t seed_get_seed(void *vctx, unsigned char **buffer, int entropy, size_t min_len,
			    size_t max_len, int prediction_resistance, const unsigned char *adin,
			    size_t adin_len)
{
	struct seedsrc *s = vctx;
	size_t n = s->len;

	if (s->staged == NULL || n < min_len || n > max_len) {
		return 0;
	}
	*buffer = s->staged;
	s->staged = NULL;
	s->len = 0;
	s->handed++;
	return n;
}

static void seed_clear_seed(void *vctx, unsigned char *buffer, size_t b_len)
{
	OPENSSL_cleanse(buffer, b_len);
}

static int seed_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	struct seedsrc *s = vctx;
	OSSL_PARAM *p;

	p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STATE);
	if (p != NULL && !OSSL_PARAM_set_int(p, EVP_RAND_STATE_READY)) {
		return 0;
	}
	p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STRENGTH);
	if (p != NULL && !OSSL_PARAM_set_uint(p, 256)) {
		return 0;
	}
	p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_MAX_REQUEST);
	if (p != NULL && !OSSL_PARAM_set_size_t(p, 65536)) {
		return 0;
	}
	p = OSSL_PARAM_locate(params, SEED_PARAM_HANDED);
	if (p != NULL && !OSSL_PARAM_set_uint64(p, s->handed)) {
		return 0;
	}
	return 1;
}

static const OSSL_PARAM *seed_gettable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM known[] = {
	    OSSL_PARAM_int(OSSL_RAND_PARAM_STATE, NULL),
	    OSSL_PARAM_uint(OSSL_RAND_PARAM_STRENGTH, NULL),
	    OSSL_PARAM_size_t(OSSL_RAND_PARAM_MAX_REQUEST, NULL),
	    OSSL_PARAM_uint64(SEED_PARAM_HANDED, NULL),
	    OSSL_PARAM_END,
	};
	return known;
}

static int seed_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	struct seedsrc *s = vctx;
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, SEED_PARAM_STAGE);

	if (p != NULL) {
		if (p->data_type != OSSL_PARAM_OCTET_STRING) {
			return 0;
		}
		s->staged = p->data;
		s->len = p->data_size;
	}
	return 1;
}

static const OSSL_DISPATCH seed_functions[] = {
    {OSSL_FUNC_RAND_NEWCTX, (void (*)(void))seed_newctx},
    {OSSL_FUNC_RAND_FREECTX, (void (*)(void))seed_freectx},
    {OSSL_FUNC_RAND_INSTANTIATE, (void (*)(void))seed_instantiate},
    {OSSL_FUNC_RAND_UNINSTANTIATE, (void (*)(void))seed_uninstantiate},
    {OSSL_FUNC_RAND_GENERATE, (void (*)(void))seed_generate},
    {OSSL_FUNC_RAND_ENABLE_LOCKING, (void (*)(void))seed_lock},
    {OSSL_FUNC_RAND_LOCK, (void (*)(void))seed_lock},
    {OSSL_FUNC_RAND_UNLOCK, (void (*)(void))seed_unlock},
    {OSSL_FUNC_RAND_GET_SEED, (void (*)(void))seed_get_seed},
    {OSSL_FUNC_RAND_CLEAR_SEED, (void (*)(void))seed_clear_seed},
    {OSSL_FUNC_RAND_GET_CTX_PARAMS, (void (*)(void))seed_get_ctx_params},
    {OSSL_FUNC_RAND_GETTABLE_CTX_PARAMS, (void (*)(void))seed_gettable_ctx_params},
    {OSSL_FUNC_RAND_SET_CTX_PARAMS, (void (*)(void))seed_set_ctx_params},
    {0, NULL},
};

static const OSSL_ALGORITHM seed_algorithms[] = {
    {SEED_RAND, "provider=" SEED_PROVIDER, seed_functions, "entropyd's pool as a seed source"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *seed_query(void *provctx, int operation_id, int *no_cache)
{
	*no_cache = 0;
	return operation_id == OSSL_OP_RAND ? seed_algorithms : NULL;
}

static const OSSL_DISPATCH seed_provider[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))seed_query},
    {0, NULL},
};

static int seed_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
			      const OSSL_DISPATCH **out, void **provctx)
{
	*out = seed_provider;
	*provctx = (void *)seed_provider; /* any non-NULL value: no state */
	return 1;
}

int drbg_seed_open(OSSL_LIB_CTX **lib, OSSL_PROVIDER *prov[2], EVP_RAND_CTX **parent)
{
	EVP_RAND *rand = NULL;

	*parent = NULL;
	prov[0] = prov[1] = NULL;
	*lib = OSSL_LIB_CTX_new();
	if (*lib == NULL || !OSSL_PROVIDER_add_builtin(*lib, SEED_PROVIDER, seed_provider_init) ||
	    (prov[0] = OSSL_PROVIDER_load(*lib, SEED_PROVIDER)) == NULL ||
	    (prov[1] = OSSL_PROVIDER_load(*lib, "default")) == NULL ||
	    (rand = EVP_RAND_fetch(*lib, SEED_RAND, NULL)) == NULL ||
	    (*parent = EVP_RAND_CTX_new(rand, NULL)) == NULL ||
	    !EVP_RAND_instantiate(*parent, 256, 0, NULL, 0, NULL)) {
		EVP_RAND_free(rand);
		drbg_seed_close(*lib, prov, *parent);
		*parent = NULL;
		*lib = NULL;
		return -1;
	}
	EVP_RAND_free(rand);
	return 0;
}

void drbg_seed_close(OSSL_LIB_CTX *lib, OSSL_PROVIDER *prov[2], EVP_RAND_CTX *parent)
{
	EVP_RAND_CTX_free(parent);
	/* A loaded provider keeps a reference of its own: freeing the context does not
	 * release it. */
	for (int i = 1; i >= 0; i--) {
		if (prov[i] != NULL) {
			OSSL_PROVIDER_unload(prov[i]);
			prov[i] = NULL;
		}
	}
	OSSL_LIB_CTX_free(lib);
}

int drbg_seed_stage(EVP_RAND_CTX *parent, const uint8_t *buf, size_t n)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(SEED_PARAM_STAGE, (void *)buf, n),
	    OSSL_PARAM_construct_end(),
	};

	return EVP_RAND_CTX_set_params(parent, params) ? 0 : -1;
}

uint64_t drbg_seed_handed(EVP_RAND_CTX *parent)
{
	uint64_t n = 0;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_uint64(SEED_PARAM_HANDED, &n),
	    OSSL_PARAM_construct_end(),
	};

	return EVP_RAND_CTX_get_params(parent, params) ? n : 0;
}
