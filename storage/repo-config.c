/* The repository config: defaults, range checks, and its JSON form. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <json-c/json.h>

#include "repo.h"

static bool
pow2 (uint64_t v)
{
  return v && !(v & (v - 1));
}

int
vmdr_repo_config_default (struct vmdr_repo_config *cfg)
{
  uint8_t rnd[16];
  time_t now = time (NULL);
  struct tm tm;

  if (getrandom (rnd, sizeof rnd, 0) != sizeof rnd)
    return -errno;
  *cfg = (struct vmdr_repo_config) {
    .version = VMDR_FORMAT_VERSION,
    .hash = vmdr_hash_default (),
    .chunk_size = 64u << 10,
    .fanout = 64,
    /* Two memory captures with 5 % of pages changed share 80 % of their
     * chunks at 8 KiB, 70 % at 16 KiB (docs/repository-format.md 7.2). */
    .cdc_min = 2u << 10, .cdc_avg = 8u << 10, .cdc_max = 32u << 10,
    /* Level 2 on 8 MiB groups stores 14 % less than level 1 on 64 KiB
     * frames, for about the same CPU (docs/repository-format.md 12). */
    .zstd_level = 2,
    .pack_size = 16u << 20,
    .group_size = 8u << 20,
  };
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf (cfg->id + 2 * i, 3, "%02x", rnd[i]);
  gmtime_r (&now, &tm);
  strftime (cfg->created, sizeof cfg->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return 0;
}

int
vmdr_repo_config_check (const struct vmdr_repo_config *c)
{
  if (c->version < 1 || c->version > VMDR_FORMAT_VERSION ||
      vmdr_hash_name (c->hash) == NULL ||
      !pow2 (c->chunk_size) || c->chunk_size < VMDR_CHUNK_MIN ||
      c->chunk_size > VMDR_CHUNK_MAX ||
      !pow2 (c->fanout) || c->fanout < 16 || c->fanout > 4096 ||
      c->cdc_min < 1024 || c->cdc_min > c->cdc_avg ||
      c->cdc_avg > c->cdc_max || c->cdc_max > VMDR_CHUNK_MAX ||
      !pow2 (c->cdc_avg) ||
      c->zstd_level < -7 || c->zstd_level > 19 ||
      c->pack_size < (1u << 20) || c->pack_size > (1ull << 30) ||
      (c->version < 2 ? c->group_size != 0
                      : c->group_size != 0 && (!pow2 (c->group_size) ||
                                               c->group_size < c->chunk_size ||
                                               c->group_size > VMDR_GROUP_SIZE_MAX ||
                                               c->group_size / c->chunk_size > VMDR_GROUP_MAX)) ||
      strlen (c->id) != 32 || strspn (c->id, "0123456789abcdef") != 32)
    return -EINVAL;
  return 0;
}

int
vmdr_repo_config_format (const struct vmdr_repo_config *c, char **json)
{
  json_object *o = json_object_new_object (), *cdc, *comp;
  const char *s;

  if (o == NULL)
    return -ENOMEM;
  cdc = json_object_new_object ();
  comp = json_object_new_object ();
  json_object_object_add (o, "format", json_object_new_string ("vmdr-repository"));
  json_object_object_add (o, "version", json_object_new_int (c->version));
  json_object_object_add (o, "id", json_object_new_string (c->id));
  json_object_object_add (o, "created", json_object_new_string (c->created));
  json_object_object_add (o, "hash", json_object_new_string (vmdr_hash_name (c->hash)));
  json_object_object_add (o, "chunk_size", json_object_new_int64 (c->chunk_size));
  json_object_object_add (o, "index_fanout", json_object_new_int64 (c->fanout));
  json_object_object_add (cdc, "min", json_object_new_int64 (c->cdc_min));
  json_object_object_add (cdc, "avg", json_object_new_int64 (c->cdc_avg));
  json_object_object_add (cdc, "max", json_object_new_int64 (c->cdc_max));
  json_object_object_add (o, "cdc", cdc);
  json_object_object_add (comp, "algorithm", json_object_new_string ("zstd"));
  json_object_object_add (comp, "level", json_object_new_int (c->zstd_level));
  json_object_object_add (o, "compression", comp);
  json_object_object_add (o, "pack_size", json_object_new_int64 ((int64_t) c->pack_size));
  if (c->version >= 2)
    json_object_object_add (o, "group_size", json_object_new_int64 (c->group_size));
  s = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
  *json = s ? strdup (s) : NULL;
  json_object_put (o);
  return *json ? 0 : -ENOMEM;
}

/* Typed member lookups: false when absent or of the wrong type. */
static bool
get_int (json_object *o, const char *name, int64_t *v)
{
  json_object *m;

  if (!json_object_object_get_ex (o, name, &m) || !json_object_is_type (m, json_type_int))
    return false;
  *v = json_object_get_int64 (m);
  return true;
}

static bool
get_str (json_object *o, const char *name, const char **v)
{
  json_object *m;

  if (!json_object_object_get_ex (o, name, &m) || !json_object_is_type (m, json_type_string))
    return false;
  *v = json_object_get_string (m);
  return true;
}

static bool
get_u32 (json_object *o, const char *name, uint32_t *v)
{
  int64_t i;

  if (!get_int (o, name, &i) || i < 0 || i > UINT32_MAX)
    return false;
  *v = (uint32_t) i;
  return true;
}

static int
parse_members (json_object *o, struct vmdr_repo_config *c)
{
  json_object *cdc, *comp;
  const char *s, *hash, *id, *created, *algo;
  int64_t version, level, pack;

  if (!get_str (o, "format", &s) || strcmp (s, "vmdr-repository") != 0 ||
      !get_int (o, "version", &version))
    return -EBADMSG;
  if (version > VMDR_FORMAT_VERSION)
    return -EPROTONOSUPPORT;
  if (version < 1 || !get_str (o, "id", &id) || !get_str (o, "hash", &hash) ||
      !get_str (o, "created", &created) ||
      !get_u32 (o, "chunk_size", &c->chunk_size) ||
      !get_u32 (o, "index_fanout", &c->fanout) ||
      !json_object_object_get_ex (o, "cdc", &cdc) ||
      !get_u32 (cdc, "min", &c->cdc_min) || !get_u32 (cdc, "avg", &c->cdc_avg) ||
      !get_u32 (cdc, "max", &c->cdc_max) ||
      !json_object_object_get_ex (o, "compression", &comp) ||
      !get_str (comp, "algorithm", &algo) || strcmp (algo, "zstd") != 0 ||
      !get_int (comp, "level", &level) || !get_int (o, "pack_size", &pack) ||
      (version >= 2 && !get_u32 (o, "group_size", &c->group_size)))
    return -EBADMSG;
  if (vmdr_hash_from_name (hash, &c->hash) < 0 || strlen (id) >= sizeof c->id ||
      strlen (created) >= sizeof c->created || level < -100 || level > 100 || pack < 0)
    return -EINVAL;
  c->version = (int) version;
  c->zstd_level = (int) level;
  c->pack_size = (uint64_t) pack;
  strcpy (c->id, id);
  strcpy (c->created, created);
  return vmdr_repo_config_check (c);
}

int
vmdr_repo_config_parse (const char *json, size_t len,
                        struct vmdr_repo_config *cfg)
{
  struct vmdr_repo_config c = { 0 };
  json_tokener *tok;
  json_object *o;
  int r;

  if (len > VMDR_CONFIG_MAX)
    return -EBADMSG;
  tok = json_tokener_new_ex (16);        /* nesting depth bound */
  if (tok == NULL)
    return -ENOMEM;
  o = json_tokener_parse_ex (tok, json, (int) len);
  r = o && json_tokener_get_error (tok) == json_tokener_success &&
      json_object_is_type (o, json_type_object) ? parse_members (o, &c) : -EBADMSG;
  json_object_put (o);
  json_tokener_free (tok);
  if (r == 0)
    *cfg = c;
  return r;
}
