#include <config.h>

#include <errno.h>
#include <string.h>

#include "cdc.h"

/* The format's gear table: splitmix64 from VMDR_CDC_GEAR_SEED, written out
 * rather than computed so that no edit changes it unnoticed (the unit tests
 * regenerate it and compare). */
static const uint64_t gear[256] = {
  0x93b88a5d507a02a7ull, 0xbc618d6a90d5e871ull, 0x697358a98c510ddeull,
  0xbf81ba8644150cceull, 0x488c6cdfe89e37d6ull, 0xeb1434c0f6c868a1ull,
  0x7844413145e2ec52ull, 0x0ea7b5f1c8901ee0ull, 0xb4147b2af7de8d92ull,
  0xf4e58cecab143eccull, 0xcdd1976453cdee79ull, 0xd4c02c8e9930be52ull,
  0x51a6b517f43e672bull, 0x6f3dfefd2d1e43cbull, 0xd9680f890f9b6357ull,
  0x33a67a3a7793b5e6ull, 0x0b480a9dadaccb95ull, 0xc71eefb38204554bull,
  0x6f31ebc28dfcc62eull, 0x7440312e437eccc8ull, 0x6e2f9df5428a70ffull,
  0x8f23575158896409ull, 0x302e9d1b913507a4ull, 0x8e44e9463f904389ull,
  0x80903ecaf6bd6e37ull, 0xb0c91c448b0e0e01ull, 0x2055a1e659b67471ull,
  0x1b61ed52e0a96aa2ull, 0x45440b3298c29ebcull, 0x60ebdcbc4b7165a9ull,
  0xce6b4b61f6ec80f4ull, 0x2e2d334f552dd1b4ull, 0x2620a76bcb8977caull,
  0xfc0c5bb04f9228f5ull, 0x92527e6f14e12668ull, 0x2d447012d09e82dbull,
  0x1857af85cd02ce89ull, 0x60008f602179ed4eull, 0x5cbf56b0281f5603ull,
  0x6058ee52c4a16cc4ull, 0x2f3b9691ad02f9acull, 0x655f1da79253cdeaull,
  0x377a733a27549266ull, 0xf15c198918511a05ull, 0x850d2c24fddb95f9ull,
  0xf9362046d57b220cull, 0xe0c848269f6e36f3ull, 0xff5c321169a72fa3ull,
  0xe16ef96ee80386a9ull, 0xaa596722bf16697cull, 0xe33137a16265c703ull,
  0xb9dd0e9205b30c7aull, 0xf229a6568aaf72d8ull, 0x9a6775ec9813bd7cull,
  0x374dd0eedc4cc48bull, 0x7de17d819ead582dull, 0x0ae2bae658feda19ull,
  0x79c1554b4e2473a8ull, 0xe6f13386ddbbecdcull, 0xbd2d1b23f4cd9634ull,
  0x0897d0d8aa9f2ca3ull, 0x2c559e22b877e435ull, 0xfa0dddb32d21d168ull,
  0x7aea1bd27e592eecull, 0x920f01568a0f28f9ull, 0x41e687682cb03a38ull,
  0x2a7b0b577cc72544ull, 0x24d873cf05432fe7ull, 0xbb62a179affe2235ull,
  0x1fb18e624328de54ull, 0x120c6d98dacbec5dull, 0x948e31dc89b0a005ull,
  0x5a52738634d82ba2ull, 0x41470f15ca020870ull, 0x4e1eab78fb4c53c9ull,
  0xfeba856ff245603dull, 0x2c3c1ef04c5361d1ull, 0x230b22b037d11832ull,
  0xb3759c772435262cull, 0x4ef3877deaa7bafaull, 0x14165dbc79e18da6ull,
  0xa289df62f0d20bc5ull, 0xc95bdc485f292befull, 0xa0874342a1e8ed0eull,
  0xc12bb863c7c788ddull, 0x2e2c622bbee6b5f3ull, 0x5d66933d56f1ff8aull,
  0xdf9ecff7ad312969ull, 0xfe0f244bed36b47cull, 0x41fdfd6f89722d12ull,
  0x8d2fd7518739e5cfull, 0x1f87e54d9463a8cbull, 0xf16b8901ad45d139ull,
  0x14693fee0b4e6899ull, 0xe3fb140ac80a7331ull, 0x6f4cfaa53eb9e98full,
  0x0e5bd689b278a173ull, 0x15852a4bd9e98e4full, 0x5b1bc15208873c83ull,
  0xdd5b666d75bee217ull, 0x96d8603fc0d3d7b4ull, 0xf424b02597da17f8ull,
  0x37c1f1bf1f23dde9ull, 0x6bb06f7ae4d0a068ull, 0x1cb4713c52a67564ull,
  0x7a5ed53f9d2cb0a7ull, 0xd2d3331e40803af3ull, 0xa2f354247e39ba27ull,
  0xcfaedbd9409fef74ull, 0x60ad6746c31429a7ull, 0x221e9ec4cd1db760ull,
  0x7949bff28532127aull, 0xc2e869dd5e6971caull, 0x419de74148c08561ull,
  0x5b5dc15e7fc6dd24ull, 0x1a28157e42edde81ull, 0x632677a20ecab5f1ull,
  0xf31299aab0bf492aull, 0xf4e7a6779f301314ull, 0x11e24d2de449d7ccull,
  0x63970f2e5392a80cull, 0xa71d46c34ec3b223ull, 0x99da12814c00847eull,
  0x7348ad0268d89aa8ull, 0x60d4099a0cf5bec5ull, 0x606c5a3d45ac1f75ull,
  0xe47445bbea46676full, 0x77fab9e6abfb12adull, 0xa8299317e1b6fa5dull,
  0x8e7627d1900871c5ull, 0x23151d97eab27e28ull, 0x31260f07543e6bc1ull,
  0x2001b2f9e680db81ull, 0xd7e5d494d4c1ef13ull, 0x7862885e989e0983ull,
  0x65d77a07683a6589ull, 0x0cf8d9760cb640f2ull, 0x8df866e7c4015494ull,
  0xf3fe4ebb40985372ull, 0xd4dc1f15208babc3ull, 0x3c2064df60a7aefaull,
  0xc7db99e347fe1e5bull, 0xa97b8f33010d00cfull, 0x484116e869bd59bfull,
  0x87309465e326c70full, 0x6e09a93a6dfa7ab5ull, 0xda5eb61c0a781e97ull,
  0x2b71f6f9e41643aeull, 0x97b3d88b366f6f40ull, 0x1503c270d2bdbdc6ull,
  0xeb3e2b20468c3f23ull, 0xe15ea1f8d012f6daull, 0xe928754abe307bb6ull,
  0x8bb3f96ad383a324ull, 0x8c045953bac196daull, 0x56775c34bf7629c4ull,
  0x28ab749283bb085eull, 0xc4d9a3fdc4181e73ull, 0xf465578d5fee4970ull,
  0xe56abac697c69744ull, 0x7d11c58806a6cd60ull, 0x74cfffa5e3771df1ull,
  0x1e520a590090f855ull, 0xb38c2889d47d9378ull, 0xb0debae484760f02ull,
  0x63ccf2a40e0cc046ull, 0x37cb63e5ca3126cfull, 0x32ff0bdb2f58313dull,
  0xfd0e19505e20c70cull, 0xd27e2cdba322a2efull, 0x4befba59b153b1ddull,
  0x62d5485883cbd32cull, 0x6f684c99a562f708ull, 0xe8f2f22926183f39ull,
  0x708ab6f99cbbb12cull, 0x6fde870ed7220811ull, 0x1c9aa77f5f714a63ull,
  0x31d3e4667ed26f59ull, 0x7aa678f21a4dc0aaull, 0x88b720f52997f221ull,
  0xe2a1bdc243a1ab50ull, 0x6a800193d2bde414ull, 0x6534b68ffbed61dfull,
  0x94eb77920c97a6c3ull, 0x40b5c675831c2558ull, 0xe50bb5fc5edb5e01ull,
  0x84c4920aad4a6cf4ull, 0x35137320e135fdcfull, 0x709038d02854b8c9ull,
  0x938a32716b283cd4ull, 0x9c5576e8960fd265ull, 0xee149ecb483699dcull,
  0xb8d19faadec32e15ull, 0x2bb0a96eed3fcba2ull, 0x6f227e5afa8d4bb6ull,
  0xe9318dbe00450694ull, 0xfd456d89baae16e1ull, 0xee9a5636a70123edull,
  0x8b2f9f26457b77cbull, 0x410979d2185fd48eull, 0x0595801417689f9aull,
  0x06b9151bdc07e930ull, 0x7e1e90d638cdc6bdull, 0x56ac208d830cee0eull,
  0x02d34f6f294f5e5bull, 0x133fb7bd2b80ac50ull, 0x4bf23437836eb512ull,
  0xfdc98f362a0d71f7ull, 0x292035215d15d2eaull, 0x773b2d59a71317dcull,
  0x34ec503bd3e692ffull, 0xf92b64217adb5981ull, 0xdf1fa8745bb8814dull,
  0xa21a4eaec7170a92ull, 0x6259bc07d86de724ull, 0x1aac45242e5b111cull,
  0x469232957dc0eaa6ull, 0xfb4833ae7c79e30dull, 0x362e875a9d9abb66ull,
  0xab6943fcc311f06cull, 0xb220d5b1e34780d2ull, 0xd6325fbee707b9d7ull,
  0x32c9d95a414e4f20ull, 0x0a79cda0ba679ca0ull, 0xed19e3d2ab9070e6ull,
  0xf3a0210ed4d6e66bull, 0x2bcde76c1dcd6bbaull, 0x907255c7698f1b0dull,
  0x776e833d6842d1eaull, 0x719ae204429dce25ull, 0xed959b5e7afca9d5ull,
  0xb3fa6d1eed8af2ceull, 0x9c4408a345d1d031ull, 0x5f02b718492bbd06ull,
  0xb75c42d5667cd1cfull, 0x76dc89fe50fc3f8eull, 0x98fb62d6270e1f3aull,
  0x4f0ffc0a94528b3cull, 0xe0ece5e81aed9c64ull, 0x35c40b88c8830ec4ull,
  0x213097958aeaeef6ull, 0x1d0669b57be5e366ull, 0xd9208eec2f390f8dull,
  0x761d87428ba2b909ull, 0x2b2544ce3b043e50ull, 0x57fb222308c7e62cull,
  0x847342f8aa2076c2ull, 0xa03d699cfcc71719ull, 0x031901524d3d0776ull,
  0xfbfbcbaf12689c5aull, 0xf6880b0f30926079ull, 0xc2105a24ee03fe58ull,
  0x9a4d8d8fbc1d8989ull, 0xf4e88d0589a62c88ull, 0xaf149848663ea172ull,
  0x99d147e3062a3073ull
};
/* The hash of a window of 64 zero bytes, G[0] * (2^64 - 1): a zero byte
 * keeps it, so it marks a run of at least 64 zero bytes. */
#define ZERO_WINDOW (UINT64_C (0) - UINT64_C (0x93b88a5d507a02a7))

uint64_t
vmdr_cdc_gear (unsigned i)
{
  return gear[i & 255];
}

/* A mask of the top BITS bits: the top bits of the gear hash depend on all
 * 64 bytes of the window, the low ones on the last few bytes only. */
static uint64_t
top_bits (unsigned bits)
{
  return ~UINT64_C (0) << (64 - bits);
}

int
vmdr_cdc_init (struct vmdr_cdc *c, uint32_t min, uint32_t avg, uint32_t max)
{
  unsigned bits = 0;

  if (min < VMDR_CDC_MIN_MIN || min > avg || avg > max || max > VMDR_CDC_MAX_MAX ||
      (avg & (avg - 1)) != 0)
    return -EINVAL;
  while ((UINT32_C (1) << bits) < avg)
    bits++;
  *c = (struct vmdr_cdc) {
    .min = min, .avg = avg, .max = max,
    .mask_s = top_bits (bits + VMDR_CDC_NORMAL_LEVEL),
    .mask_l = top_bits (bits - VMDR_CDC_NORMAL_LEVEL),
  };
  return 0;
}

void
vmdr_cdc_reset (struct vmdr_cdc *c)
{
  c->pos = 0;
  c->h = 0;
}

static size_t
min_size (size_t a, size_t b)
{
  return a < b ? a : b;
}

/* Hash N bytes without looking for a cut: the window before the minimum. */
static uint64_t
warm (uint64_t h, const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    h = (h << 1) + gear[p[i]];
  return h;
}

/* Hash up to N bytes; the number of bytes up to and including the first
 * whose window may end the chunk (no bit of MASK set) or is all zero, or 0
 * when there is none.  The hot loop: everything else is rare. */
static size_t
scan (uint64_t *hp, const uint8_t *p, size_t n, uint64_t mask)
{
  uint64_t h = *hp;

  for (size_t i = 0; i < n; i++) {
    h = (h << 1) + gear[p[i]];
    if (__builtin_expect ((h & mask) == 0 || h == ZERO_WINDOW, 0)) {
      *hp = h;
      return i + 1;
    }
  }
  *hp = h;
  return 0;
}

/* Leading zero bytes of P[0 .. n), a word at a time: zero runs in memory
 * images go on for gigabytes. */
static size_t
zero_prefix (const uint8_t *p, size_t n)
{
  size_t i = 0;

  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy (&w, p + i, 8);
    if (w != 0)
      break;
  }
  while (i < n && p[i] == 0)
    i++;
  return i;
}

/* The bytes of P[0 .. n) that belong to the current chunk, one phase of the
 * rule at a time: not hashed (more than a window below min), hashed only
 * (the window below min), in a zero run, or looking for a cut with the
 * strict mask (length <= avg) or the loose one. */
static size_t
step (struct vmdr_cdc *c, const uint8_t *p, size_t n, bool *cut)
{
  uint32_t pos = c->pos;
  size_t k, r;

  if (pos < c->min - VMDR_CDC_WINDOW)
    k = min_size (n, c->min - VMDR_CDC_WINDOW - pos);
  else if (pos < c->min - 1) {
    k = min_size (n, c->min - 1 - pos);
    c->h = warm (c->h, p, k);
  }
  else if (pos >= c->min && c->h == ZERO_WINDOW) {
    /* Zero bytes keep the hash; the first other byte starts a chunk. */
    k = zero_prefix (p, min_size (n, c->max - pos));
    if (k < n && pos + k < c->max && p[k] != 0)
      *cut = true;
  }
  else {
    bool strict = pos < c->avg;
    k = min_size (n, (strict ? c->avg : c->max) - pos);
    r = scan (&c->h, p, k, strict ? c->mask_s : c->mask_l);
    if (r != 0) {               /* a cut, or a zero run starts */
      k = r;
      *cut = c->h != ZERO_WINDOW;
    }
  }
  c->pos = pos + (uint32_t) k;
  if (c->pos == c->max)
    *cut = true;
  return k;
}

size_t
vmdr_cdc_feed (struct vmdr_cdc *c, const void *buf, size_t len, bool *cut)
{
  const uint8_t *p = buf;
  size_t done = 0;

  *cut = false;
  while (!*cut && done < len)
    done += step (c, p + done, len - done, cut);
  if (*cut)
    vmdr_cdc_reset (c);
  return done;
}
