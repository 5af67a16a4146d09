/* Unit tests of the S3 client's pure parts: query canonicalisation, URLs,
 * the XML answers and the configuration from the environment.  No server:
 * the service test is tests/s3/test-s3.sh.  Criterion runs every test in its
 * own process, so setenv here does not leak between tests. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "backend.h"
#include "s3.h"
#include "s3-internal.h"

/* ---- canonical query ---------------------------------------------------- */

static const char *
canon (const struct vmdr_s3_param *p, size_t n)
{
  static char out[1024];
  int r = vmdr_s3_canonical_query (p, n, out, sizeof out);
  cr_assert_geq (r, 0, "canonical query failed: %d", r);
  cr_assert_eq ((size_t) r, strlen (out));
  return out;
}

Test (query, empty)
{
  cr_assert_str_eq (canon (NULL, 0), "");
}

Test (query, sorted_by_name)
{
  const struct vmdr_s3_param p[] = {
    { "prefix", "a b" }, { "list-type", "2" }, { "continuation-token", "x/y+z=" },
    { "max-keys", "2" },
  };
  cr_assert_str_eq (canon (p, 4),
                    "continuation-token=x%2Fy%2Bz%3D&list-type=2&max-keys=2&prefix=a%20b");
}

Test (query, empty_value_has_equals)
{
  const struct vmdr_s3_param p[] = { { "uploads", NULL }, { "acl", "" } };
  cr_assert_str_eq (canon (p, 2), "acl=&uploads=");
}

Test (query, rfc3986_encoding)
{
  const struct vmdr_s3_param p[] = { { "k", "-._~AZaz09 !*'();:@&=+$,/?#[]%\xc3\xa9" } };
  cr_assert_str_eq (canon (p, 1),
                    "k=-._~AZaz09%20%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D%25%C3%A9");
}

Test (query, sorted_by_encoded_name_then_value)
{
  /* '%' (0x25) sorts before 'a': "a b" encodes to "a%20b", before "a-b" */
  const struct vmdr_s3_param p[] = {
    { "b", "2" }, { "b", "10" }, { "a-b", "x" }, { "a b", "y" },
  };
  cr_assert_str_eq (canon (p, 4), "a%20b=y&a-b=x&b=10&b=2");
}

Test (query, bad_names)
{
  char out[64];
  const struct vmdr_s3_param null_name[] = { { NULL, "x" } };
  const struct vmdr_s3_param empty_name[] = { { "", "x" } };

  cr_assert_eq (vmdr_s3_canonical_query (null_name, 1, out, sizeof out), -EINVAL);
  cr_assert_eq (vmdr_s3_canonical_query (empty_name, 1, out, sizeof out), -EINVAL);
  cr_assert_eq (vmdr_s3_canonical_query (NULL, 1, out, sizeof out), -EINVAL);
}

Test (query, overflow)
{
  char out[16];
  const struct vmdr_s3_param p[] = { { "prefix", "0123456789" } };
  const struct vmdr_s3_param fits[] = { { "prefix", "01234567" } };

  cr_assert_eq (vmdr_s3_canonical_query (p, 1, out, sizeof out), -ENAMETOOLONG);
  cr_assert_eq (vmdr_s3_canonical_query (fits, 1, out, sizeof out), 15, "15 bytes and a NUL fit");
  cr_assert_str_eq (out, "prefix=01234567");
}

Test (query, huge_value_refused)
{
  static char big[S3_QUERY_MAX];
  static char out[S3_QUERY_MAX * 4];
  struct vmdr_s3_param p[] = { { "prefix", big } };

  memset (big, '/', sizeof big - 1);    /* each '/' becomes "%2F" */
  cr_assert_eq (vmdr_s3_canonical_query (p, 1, out, sizeof out), -ENAMETOOLONG);
}

/* ---- endpoints and URLs ------------------------------------------------- */

Test (endpoint, good)
{
  struct s3_endpoint ep;

  cr_assert_eq (s3_endpoint_parse ("http://127.0.0.1:7480", &ep), 0);
  cr_assert_str_eq (ep.scheme, "http");
  cr_assert_str_eq (ep.host, "127.0.0.1");
  cr_assert_str_eq (ep.port, "7480");
  cr_assert (ep.host_is_ip);

  cr_assert_eq (s3_endpoint_parse ("https://s3.eu-west-1.amazonaws.com/", &ep), 0);
  cr_assert_str_eq (ep.scheme, "https");
  cr_assert_str_eq (ep.host, "s3.eu-west-1.amazonaws.com");
  cr_assert_str_eq (ep.port, "");
  cr_assert_not (ep.host_is_ip);

  cr_assert_eq (s3_endpoint_parse ("http://[::1]:9000", &ep), 0);
  cr_assert (ep.host_is_ip);
}

Test (endpoint, bad)
{
  static const char *const bad[] = {
    "localhost:9000", "ftp://example.com", "http://user:secret@example.com",
    "http://example.com/bucket", "http://example.com/?x=1", "http://example.com/#f",
    "", "http://", "not a url at all",
  };
  struct s3_endpoint ep = { .scheme = "keep" };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_eq (s3_endpoint_parse (bad[i], &ep), -EINVAL, "accepted '%s'", bad[i]);
  cr_assert_str_eq (ep.scheme, "keep", "output changed on failure");
  cr_assert_eq (s3_endpoint_parse (NULL, &ep), -EINVAL);
}

Test (endpoint, too_long)
{
  char url[S3_ENDPOINT_MAX + 32];
  struct s3_endpoint ep;

  snprintf (url, sizeof url, "http://%0*d.example.com", S3_ENDPOINT_MAX, 0);
  cr_assert_eq (s3_endpoint_parse (url, &ep), -ENAMETOOLONG);
}

static const char *
url (const char *endpoint, enum vmdr_s3_addressing style, const char *bucket,
     const char *key, const char *query)
{
  static char out[512];
  struct s3_endpoint ep;
  int r;

  cr_assert_eq (s3_endpoint_parse (endpoint, &ep), 0);
  r = s3_build_url (&ep, style, bucket, key, query, out, sizeof out);
  cr_assert_geq (r, 0, "s3_build_url: %d", r);
  cr_assert_eq ((size_t) r, strlen (out));
  return out;
}

Test (url, path_style)
{
  cr_assert_str_eq (url ("http://127.0.0.1:7480", VMDR_S3_PATH_STYLE, "bkt", "dir/a b.bin", NULL),
                    "http://127.0.0.1:7480/bkt/dir/a%20b.bin");
  cr_assert_str_eq (url ("http://127.0.0.1:7480", VMDR_S3_PATH_STYLE, "bkt", NULL, "list-type=2"),
                    "http://127.0.0.1:7480/bkt?list-type=2");
  cr_assert_str_eq (url ("http://h", VMDR_S3_PATH_STYLE, NULL, NULL, ""), "http://h/");
}

Test (url, virtual_host_style)
{
  cr_assert_str_eq (url ("https://s3.example.com", VMDR_S3_VIRTUAL_HOST_STYLE, "bkt", "k", "uploads="),
                    "https://bkt.s3.example.com/k?uploads=");
  cr_assert_str_eq (url ("http://localhost:8080", VMDR_S3_VIRTUAL_HOST_STYLE, "bkt", NULL, NULL),
                    "http://bkt.localhost:8080/");
  /* the service itself has no bucket to put in front */
  cr_assert_str_eq (url ("https://s3.example.com", VMDR_S3_VIRTUAL_HOST_STYLE, NULL, NULL, NULL),
                    "https://s3.example.com/");
}

Test (url, key_encoding)
{
  /* '/' separates, unreserved stay, everything else is %XX of the UTF-8 */
  cr_assert_str_eq (url ("http://h", VMDR_S3_PATH_STYLE, "bkt",
                         "a/ü €+%&=?#~*(1)/../x", NULL),
                    "http://h/bkt/a/%C3%BC%20%E2%82%AC%2B%25%26%3D%3F%23~%2A%281%29/../x");
}

Test (url, refused)
{
  struct s3_endpoint ep;
  char out[64];

  cr_assert_eq (s3_endpoint_parse ("http://10.0.0.1:80", &ep), 0);
  cr_assert_eq (s3_build_url (&ep, VMDR_S3_VIRTUAL_HOST_STYLE, "bkt", "k", NULL, out, sizeof out),
                -EINVAL, "virtual-host style needs a DNS name");
  cr_assert_eq (s3_build_url (&ep, VMDR_S3_PATH_STYLE, NULL, "k", NULL, out, sizeof out), -EINVAL);
  cr_assert_eq (s3_build_url (&ep, VMDR_S3_PATH_STYLE, "bkt",
                              "a-key-that-does-not-fit-in-sixty-four-bytes-of-url-buffer",
                              NULL, out, sizeof out), -ENAMETOOLONG);
}

Test (bucket, names)
{
  static const char *const good[] = { "abc", "my-bucket.v2", "0bucket9", NULL };
  static const char *const bad[] = {
    "ab", "Bucket", "my_bucket", "-abc", "abc-", ".abc", "a..b", "192.168.1.1",
    "a b", "0123456789012345678901234567890123456789012345678901234567890123", NULL,
  };
  for (size_t i = 0; good[i]; i++)
    cr_expect_eq (vmdr_s3_check_bucket (good[i]), 0, "refused '%s'", good[i]);
  for (size_t i = 0; bad[i]; i++)
    cr_expect_eq (vmdr_s3_check_bucket (bad[i]), -EINVAL, "accepted '%s'", bad[i]);
  cr_assert_eq (vmdr_s3_check_bucket (NULL), -EINVAL);
}

/* ---- XML ---------------------------------------------------------------- */

static const char list_doc[] =
  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
  "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
  "<Name>bkt</Name><Prefix>p/</Prefix><MaxKeys>2</MaxKeys><KeyCount>2</KeyCount>"
  "<IsTruncated>true</IsTruncated>"
  "<NextContinuationToken>tok&amp;en/1</NextContinuationToken>"
  "<Contents><Key>p/a&amp;b&lt;c&gt;&quot;d&apos;e</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
  "<ETag>&quot;0123&quot;</ETag><Size>1000</Size><StorageClass>STANDARD</StorageClass>"
  "<Owner><ID>x</ID><DisplayName>x</DisplayName></Owner></Contents>"
  "<Contents><Key>p/&#233;&#x20AC; b</Key><Size>18446744073709551615</Size></Contents>"
  "</ListBucketResult>\n";

static int
parse_list (const char *xml, struct vmdr_s3_list_page *pg)
{
  return s3_parse_list (xml, strlen (xml), pg);
}

Test (xml_list, parses_keys_sizes_and_token)
{
  struct vmdr_s3_list_page pg = { 0 };

  cr_assert_eq (parse_list (list_doc, &pg), 0);
  cr_assert_eq (pg.n_objects, 2);
  cr_assert_str_eq (pg.objects[0].key, "p/a&b<c>\"d'e");
  cr_assert_eq (pg.objects[0].size, 1000);
  cr_assert_str_eq (pg.objects[1].key, "p/\xc3\xa9\xe2\x82\xac b");
  cr_assert_eq (pg.objects[1].size, UINT64_MAX);
  cr_assert_eq (pg.objects[0].mtime, 1704067200, "LastModified is parsed");
  cr_assert_eq (pg.objects[1].mtime, -1, "no LastModified: -1");
  cr_assert (pg.truncated);
  cr_assert_str_eq (pg.next_token, "tok&en/1");
  vmdr_s3_list_page_clear (&pg);
  cr_assert_null (pg.objects);
  vmdr_s3_list_page_clear (&pg);        /* twice is fine */
  vmdr_s3_list_page_clear (NULL);
}

Test (xml_list, last_page_and_empty_page)
{
  struct vmdr_s3_list_page pg = { 0 };

  /* a token on the last page is dropped: the contract says NULL */
  cr_assert_eq (parse_list ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                            "<NextContinuationToken>x</NextContinuationToken>"
                            "<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>",
                            &pg), 0);
  cr_assert_eq (pg.n_objects, 1);
  cr_assert_not (pg.truncated);
  cr_assert_null (pg.next_token);
  vmdr_s3_list_page_clear (&pg);

  cr_assert_eq (parse_list ("<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount>"
                            "<IsTruncated>false</IsTruncated></ListBucketResult>", &pg), 0);
  cr_assert_eq (pg.n_objects, 0);
  vmdr_s3_list_page_clear (&pg);
}

Test (xml_list, whitespace_comments_and_empty_elements)
{
  struct vmdr_s3_list_page pg = { 0 };

  cr_assert_eq (parse_list ("\n<?xml version='1.0'?>\n<!-- a comment -->\n"
                            "<ListBucketResult a='>' b=\"/>\">\n"
                            "  <Prefix/>\n  <IsTruncated> true </IsTruncated>\n"
                            "  <NextContinuationToken>t</NextContinuationToken>\n"
                            "  <Contents>\n    <Key> spaced key </Key>\n"
                            "    <Size> 7 </Size>\n  </Contents >\n"
                            "</ListBucketResult>\n<!-- trailing -->\n", &pg), 0);
  cr_assert_eq (pg.n_objects, 1);
  cr_assert_str_eq (pg.objects[0].key, " spaced key ", "key text is kept verbatim");
  cr_assert_eq (pg.objects[0].size, 7);
  cr_assert (pg.truncated);
  vmdr_s3_list_page_clear (&pg);
}

Test (xml_list, every_truncation_is_refused)
{
  size_t n = strlen (list_doc);
  /* cut before the closing tag: anything shorter is an unfinished document */
  size_t complete = strstr (list_doc, "</ListBucketResult>") - list_doc
                    + strlen ("</ListBucketResult>");

  for (size_t len = 0; len < complete; len++) {
    struct vmdr_s3_list_page pg = { .n_objects = 42 };
    cr_assert_eq (s3_parse_list (list_doc, len, &pg), -EBADMSG, "accepted %zu bytes", len);
    cr_assert_eq (pg.n_objects, 42, "page changed on failure");
  }
  for (size_t len = complete; len <= n; len++) {
    struct vmdr_s3_list_page pg = { 0 };
    cr_assert_eq (s3_parse_list (list_doc, len, &pg), 0);
    vmdr_s3_list_page_clear (&pg);
  }
}

Test (xml_list, garbage_is_refused)
{
  static const char *const bad[] = {
    "", "   ", "not xml", "<html><body>502 Bad Gateway</body></html>",
    "<Error><Code>NoSuchBucket</Code></Error>",
    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult><x/>",
    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>junk",
    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucket>",
    "<ListBucketResult><IsTruncated>false</Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated>",
    "<!DOCTYPE x [<!ENTITY a \"b\">]><ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
    "<ListBucketResult><![CDATA[x]]><IsTruncated>false</IsTruncated></ListBucketResult>",
    "<ListBucketResult></ListBucketResult>",                            /* no IsTruncated */
    "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
    "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", /* no token */
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key></Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Key>b</Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k<b>x</b></Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&foo;</Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&amp</Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&#0;</Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&#xD800;</Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&#x110000;</Key><Size>1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>18446744073709551616</Size></Contents></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>1</Size></Contents a=\"x></ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult",
    "<1ListBucketResult/>",
    "< ListBucketResult/>",
    NULL,
  };

  for (size_t i = 0; bad[i]; i++) {
    struct vmdr_s3_list_page pg = { 0 };
    cr_expect_eq (parse_list (bad[i], &pg), -EBADMSG, "accepted: %s", bad[i]);
    cr_expect_null (pg.objects);
  }
}

Test (xml_list, embedded_nul_is_refused)
{
  static const char doc[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                            "<Contents><Key>a\0b</Key><Size>1</Size></Contents></ListBucketResult>";
  struct vmdr_s3_list_page pg = { 0 };

  cr_assert_eq (s3_parse_list (doc, sizeof doc - 1, &pg), -EBADMSG);
}

/* A document with n keys of key_len bytes each. */
static char *
make_list (size_t n, size_t key_len)
{
  size_t cap = 128 + n * (key_len + 64);
  char *doc = malloc (cap), *p = doc;

  cr_assert_not_null (doc);
  p += sprintf (p, "<ListBucketResult><IsTruncated>false</IsTruncated>");
  for (size_t i = 0; i < n; i++) {
    p += sprintf (p, "<Contents><Key>");
    memset (p, 'k', key_len);
    p += key_len;
    p += sprintf (p, "</Key><Size>%zu</Size></Contents>", i);
  }
  sprintf (p, "</ListBucketResult>");
  return doc;
}

Test (xml_list, oversized_input_is_refused)
{
  struct vmdr_s3_list_page pg = { 0 };
  char *doc;

  doc = make_list (1, VMDR_S3_KEY_MAX);
  cr_assert_eq (parse_list (doc, &pg), 0, "a key of the maximal length");
  cr_assert_eq (strlen (pg.objects[0].key), VMDR_S3_KEY_MAX);
  vmdr_s3_list_page_clear (&pg);
  free (doc);

  doc = make_list (1, VMDR_S3_KEY_MAX + 1);
  cr_assert_eq (parse_list (doc, &pg), -EBADMSG, "a key too long");
  free (doc);

  doc = make_list (1, 100000);
  cr_assert_eq (parse_list (doc, &pg), -EBADMSG, "a key far too long");
  free (doc);

  doc = make_list (VMDR_S3_LIST_MAX_KEYS, 8);
  cr_assert_eq (parse_list (doc, &pg), 0, "a full page");
  cr_assert_eq (pg.n_objects, VMDR_S3_LIST_MAX_KEYS);
  cr_assert_eq (pg.objects[999].size, 999);
  vmdr_s3_list_page_clear (&pg);
  free (doc);

  doc = make_list (VMDR_S3_LIST_MAX_KEYS + 1, 8);
  cr_assert_eq (parse_list (doc, &pg), -EBADMSG, "more keys than a page holds");
  free (doc);
}

Test (xml_list, nesting_is_bounded)
{
  char doc[1024], *p = doc;
  struct vmdr_s3_list_page pg = { 0 };

  p += sprintf (p, "<ListBucketResult><IsTruncated>false</IsTruncated>");
  for (int i = 0; i < S3_XML_DEPTH_MAX; i++)
    p += sprintf (p, "<a>");
  for (int i = 0; i < S3_XML_DEPTH_MAX; i++)
    p += sprintf (p, "</a>");
  sprintf (p, "</ListBucketResult>");
  cr_assert_eq (parse_list (doc, &pg), -EBADMSG);
}

Test (xml, decode)
{
  char out[64];
  struct s3_buf b;

  const char *in = "&lt;a&gt; &amp;&quot;&apos; &#65;&#x42;&#x1F600;";

  s3_buf_init (&b, out, sizeof out);
  cr_assert_eq (s3_xml_decode (&b, in, strlen (in)), 0);
  cr_assert_str_eq (out, "<a> &\"' AB\xf0\x9f\x98\x80");

  s3_buf_init (&b, out, 4);
  cr_assert_eq (s3_xml_decode (&b, "abcdef", 6), 0);
  cr_assert (b.overflow, "overflow is flagged");
  cr_assert_str_eq (out, "abc", "and what fits is kept");

  s3_buf_init (&b, out, sizeof out);
  cr_assert_eq (s3_xml_decode (&b, in, strlen (in) + 1), -EBADMSG, "a NUL in the text");
  cr_assert_eq (s3_xml_decode (&b, "&#x41", 5), -EBADMSG);
  cr_assert_eq (s3_xml_decode (&b, "&#;", 3), -EBADMSG);
  cr_assert_eq (s3_xml_decode (&b, "&#x;", 4), -EBADMSG);
  cr_assert_eq (s3_xml_decode (&b, "&#99999999999999999999;", 23), -EBADMSG);
  cr_assert_eq (s3_xml_decode (&b, "&AMP;", 5), -EBADMSG);
}

Test (xml_error, code_and_message)
{
  struct vmdr_s3_status st = { .http = 404 };
  const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
                    "<Message>The key &quot;x&quot; does not exist</Message>"
                    "<BucketName>b</BucketName><RequestId>tx0</RequestId></Error>";

  cr_assert_eq (s3_parse_error (doc, strlen (doc), &st), 0);
  cr_assert_str_eq (st.code, "NoSuchKey");
  cr_assert_str_eq (st.message, "The key \"x\" does not exist");
  cr_assert_eq (st.http, 404);
}

Test (xml_error, long_message_is_truncated_on_a_character)
{
  struct vmdr_s3_status st = { 0 };
  char doc[2048], *p = doc;

  p += sprintf (p, "<Error><Code>SlowDown</Code><Message>");
  for (int i = 0; i < 300; i++)
    p += sprintf (p, "\xc3\xa9");                   /* two bytes each */
  sprintf (p, "</Message></Error>");
  cr_assert_eq (s3_parse_error (doc, strlen (doc), &st), 0);
  cr_assert_str_eq (st.code, "SlowDown");
  cr_assert_eq (strlen (st.message), sizeof st.message - 2, "a whole number of characters");
}

Test (xml_error, not_an_error_body)
{
  struct vmdr_s3_status st = { .code = "keep" };
  const char *bad[] = { "<html>Bad Gateway</html>", "<Error><Code>x</Error>", "", NULL };

  for (int i = 0; bad[i]; i++)
    cr_assert_eq (s3_parse_error (bad[i], strlen (bad[i]), &st), -EBADMSG, "%s", bad[i]);
  cr_assert_str_eq (st.code, "keep");
}

Test (status, errno_mapping)
{
  cr_assert_eq (s3_http_errno (200, ""), 0);
  cr_assert_eq (s3_http_errno (404, "NoSuchKey"), -ENOENT);
  cr_assert_eq (s3_http_errno (403, "SignatureDoesNotMatch"), -EACCES);
  cr_assert_eq (s3_http_errno (409, "BucketNotEmpty"), -ENOTEMPTY);
  cr_assert_eq (s3_http_errno (409, "BucketAlreadyOwnedByYou"), -EEXIST);
  cr_assert_eq (s3_http_errno (409, "OperationAborted"), -EIO);
  cr_assert_eq (s3_http_errno (416, "InvalidRange"), -ERANGE);
  cr_assert_eq (s3_http_errno (503, "SlowDown"), -EAGAIN);
  cr_assert_eq (s3_http_errno (500, "InternalError"), -EIO);
  cr_assert_eq (s3_http_errno (301, "PermanentRedirect"), -EIO);
}

Test (status, describe)
{
  struct vmdr_s3_status st = { .http = 404, .code = "NoSuchKey", .message = "gone" };
  char out[128];

  vmdr_s3_status_describe (&st, out, sizeof out);
  cr_assert_str_eq (out, "HTTP 404 NoSuchKey: gone");
  st = (struct vmdr_s3_status) { .http = 500 };
  vmdr_s3_status_describe (&st, out, sizeof out);
  cr_assert_str_eq (out, "HTTP 500");
  st = (struct vmdr_s3_status) { .message = "Could not connect" };
  vmdr_s3_status_describe (&st, out, sizeof out);
  cr_assert_str_eq (out, "Could not connect");
  vmdr_s3_status_describe (NULL, out, sizeof out);
  cr_assert_str_eq (out, "no answer from the server");
}

/* ---- configuration from the environment --------------------------------- */

static void
clean_env (void)
{
  static const char *const vars[] = {
    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "VMDR_S3_ADDRESSING_STYLE", "AWS_PROFILE", NULL,
  };
  for (int i = 0; vars[i]; i++)
    unsetenv (vars[i]);
  /* never the real ~/.aws of whoever runs the tests */
  setenv ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
  setenv ("AWS_CONFIG_FILE", "/nonexistent/config", 1);
  setenv ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
}

TestSuite (config, .init = clean_env);

/* from_env must fail with `want` and leave the config alone */
static void
expect_env_error (int want, const char *why)
{
  struct vmdr_s3_config cfg = { .region = (char *) "sentinel" };

  cr_assert_eq (vmdr_s3_config_from_env (&cfg), want, "%s", why);
  cr_assert_str_eq (cfg.region, "sentinel", "config changed on failure (%s)", why);
}

Test (config, aws_defaults)
{
  struct vmdr_s3_config cfg = { 0 };

  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.endpoint, "https://s3.us-east-1.amazonaws.com");
  cr_assert_str_eq (cfg.region, "us-east-1");
  cr_assert_str_eq (cfg.access_key_id, "AKIDEXAMPLE");
  cr_assert_str_eq (cfg.secret_access_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
  cr_assert_null (cfg.session_token);
  cr_assert_eq (cfg.addressing, VMDR_S3_VIRTUAL_HOST_STYLE);
  vmdr_s3_config_clear (&cfg);
  cr_assert_null (cfg.secret_access_key);
  vmdr_s3_config_clear (&cfg);
  vmdr_s3_config_clear (NULL);
}

Test (config, custom_endpoint)
{
  struct vmdr_s3_config cfg = { 0 };

  setenv ("AWS_ENDPOINT_URL", "http://127.0.0.1:7480", 1);
  setenv ("AWS_DEFAULT_REGION", "eu-central-1", 1);
  setenv ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEBYaDtoken", 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.endpoint, "http://127.0.0.1:7480");
  cr_assert_str_eq (cfg.region, "eu-central-1");
  cr_assert_str_eq (cfg.session_token, "FwoGZXIvYXdzEBYaDtoken");
  cr_assert_eq (cfg.addressing, VMDR_S3_PATH_STYLE, "custom endpoints get path style");
  vmdr_s3_config_clear (&cfg);
}

Test (config, precedence)
{
  struct vmdr_s3_config cfg = { 0 };

  setenv ("AWS_ENDPOINT_URL", "http://general:1", 1);
  setenv ("AWS_ENDPOINT_URL_S3", "http://s3-specific:2", 1);
  setenv ("AWS_REGION", "ap-south-1", 1);
  setenv ("AWS_DEFAULT_REGION", "eu-central-1", 1);
  setenv ("VMDR_S3_ADDRESSING_STYLE", "virtual", 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.endpoint, "http://s3-specific:2");
  cr_assert_str_eq (cfg.region, "ap-south-1");
  cr_assert_eq (cfg.addressing, VMDR_S3_VIRTUAL_HOST_STYLE);
  vmdr_s3_config_clear (&cfg);

  setenv ("AWS_ENDPOINT_URL_S3", "", 1);      /* empty means unset */
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.endpoint, "http://general:1");
  vmdr_s3_config_clear (&cfg);
}

Test (config, missing_credentials)
{
  unsetenv ("AWS_SECRET_ACCESS_KEY");
  expect_env_error (-ENOKEY, "no secret");
  clean_env ();
  unsetenv ("AWS_ACCESS_KEY_ID");
  expect_env_error (-ENOKEY, "no access key");
  setenv ("AWS_ACCESS_KEY_ID", "", 1);
  expect_env_error (-ENOKEY, "empty access key");
}

Test (config, malformed_values)
{
  static const struct { const char *var, *value; } bad[] = {
    { "AWS_ENDPOINT_URL", "localhost:7480" },
    { "AWS_ENDPOINT_URL", "ftp://example.com" },
    { "AWS_ENDPOINT_URL", "http://example.com/some/path" },
    { "AWS_ENDPOINT_URL", "http://key:secret@example.com" },
    { "AWS_REGION", "US_EAST_1" },
    { "AWS_REGION", "us-east-1/../x" },
    { "AWS_ACCESS_KEY_ID", "AKID WITH SPACE" },
    { "AWS_SECRET_ACCESS_KEY", "secret\nwith-newline" },
    { "AWS_SESSION_TOKEN", "tok\r\nX-Injected: 1" },
    { "VMDR_S3_ADDRESSING_STYLE", "sideways" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    clean_env ();
    setenv (bad[i].var, bad[i].value, 1);
    expect_env_error (-EINVAL, bad[i].value);
  }
}

Test (config, virtual_host_style_needs_a_name)
{
  setenv ("AWS_ENDPOINT_URL", "http://127.0.0.1:7480", 1);
  setenv ("VMDR_S3_ADDRESSING_STYLE", "virtual", 1);
  expect_env_error (-EINVAL, "virtual-host style on an IP address");
  setenv ("AWS_ENDPOINT_URL", "http://localhost:7480", 1);
  struct vmdr_s3_config cfg = { 0 };
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  vmdr_s3_config_clear (&cfg);
}

Test (config, too_long)
{
  char big[10000];

  memset (big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  setenv ("AWS_SECRET_ACCESS_KEY", big, 1);
  expect_env_error (-ENAMETOOLONG, "secret");
  clean_env ();
  setenv ("AWS_SESSION_TOKEN", big, 1);
  expect_env_error (-ENAMETOOLONG, "token");
  clean_env ();
  setenv ("AWS_REGION", big + sizeof big - 40, 1);
  expect_env_error (-ENAMETOOLONG, "region");
  clean_env ();
  memcpy (big, "http://", 7);
  big[300] = '\0';
  setenv ("AWS_ENDPOINT_URL", big, 1);
  expect_env_error (-ENAMETOOLONG, "endpoint");
}

/* ---- connection and request checks (nothing reaches a server) ---------- */

static struct vmdr_s3 *
open_local (const char *endpoint)
{
  struct vmdr_s3_config cfg = { 0 };
  struct vmdr_s3 *s3 = NULL;

  setenv ("AWS_ENDPOINT_URL", endpoint, 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_eq (vmdr_s3_open (&cfg, &s3), 0);
  vmdr_s3_config_clear (&cfg);          /* the connection has its own copy */
  return s3;
}

Test (config, open_checks_the_config)
{
  struct vmdr_s3_config cfg = {
    .endpoint = (char *) "http://h", .region = (char *) "us-east-1",
    .access_key_id = (char *) "AKID",
  };
  struct vmdr_s3 *s3 = (struct vmdr_s3 *) &cfg;    /* must stay untouched */

  cr_assert_eq (vmdr_s3_open (&cfg, &s3), -ENOKEY);
  cfg.secret_access_key = (char *) "secret";
  cfg.connect_timeout_ms = -1;
  cr_assert_eq (vmdr_s3_open (&cfg, &s3), -EINVAL);
  cr_assert_eq ((void *) s3, (void *) &cfg);
  cr_assert_eq (vmdr_s3_open (NULL, &s3), -EINVAL);
  cr_assert_null (vmdr_s3_close (NULL));
}

Test (config, bad_requests_are_refused_before_sending)
{
  /* port 1 refuses connections: a request that got that far fails differently */
  struct vmdr_s3 *s3 = open_local ("http://127.0.0.1:1");
  struct vmdr_s3_response resp = { 0 };
  char long_key[VMDR_S3_KEY_MAX + 2];
  const char *crlf[] = { "x-amz-meta-a: b\r\nx-injected: c", NULL };
  const char *nocolon[] = { "just-a-name", NULL };
  const struct vmdr_s3_request bad[] = {
    { .method = "PATCH", .bucket = "bkt" },
    { .method = NULL, .bucket = "bkt" },
    { .method = "GET", .bucket = "bkt", .key = "k", .body = "x", .body_len = 1 },
    { .method = "PUT", .bucket = "bkt", .key = "k", .body = NULL, .body_len = 1 },
    { .method = "GET", .bucket = "Bad_Bucket" },
    { .method = "GET", .key = "k" },
    { .method = "GET", .bucket = "bkt", .key = "" },
    { .method = "GET", .bucket = "bkt", .key = long_key },
    { .method = "GET", .bucket = "bkt", .headers = crlf },
    { .method = "GET", .bucket = "bkt", .headers = nocolon },
    { .method = "GET", .bucket = "bkt", .max_body = VMDR_S3_BODY_HARD_MAX + 1 },
    { .method = "GET", .bucket = "bkt", .key = "k",
      .range = &(struct vmdr_s3_range) { .offset = UINT64_MAX, .length = 2 } },
  };

  memset (long_key, 'k', sizeof long_key - 1);
  long_key[sizeof long_key - 1] = '\0';
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_expect_eq (vmdr_s3_request (s3, &bad[i], &resp), -EINVAL, "request %zu", i);
    cr_expect_eq (resp.status.http, 0);
    vmdr_s3_response_clear (&resp);
  }
  cr_assert_null (vmdr_s3_close (s3));
}

Test (config, transport_errors_have_no_status)
{
  struct vmdr_s3 *s3 = open_local ("http://127.0.0.1:1");
  struct vmdr_s3_status st = { .http = 99 };
  void *data = (void *) &st;
  size_t len = 7;

  cr_assert_eq (vmdr_s3_get_object (s3, "bkt", "k", NULL, 0, &data, &len, &st), -ECONNREFUSED);
  cr_assert_eq (st.http, 0);
  cr_assert_neq (st.message[0], '\0', "curl's explanation is kept");
  cr_assert_eq (data, (void *) &st, "outputs untouched on failure");
  cr_assert_eq (len, 7);
  vmdr_s3_close (s3);
}

/* ---- times, multipart answers ------------------------------------------- */

Test (xml, iso8601)
{
  static const struct { const char *s; time_t t; } good[] = {
    { "2024-01-01T00:00:00.000Z", 1704067200 },
    { "2024-01-01T00:00:00Z", 1704067200 },
    { " 2026-11-28T00:59:06.239Z ", 1795827546 },
    { "1970-01-01T00:00:01.123456789Z", 1 },
  };
  static const char *const bad[] = {
    "", "2024-01-01", "2024-01-01T00:00:00", "2024-01-01T00:00:00+01:00",
    "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:00.Z",
    "2024-01-01T00:00:00.0000000000Z", "1969-12-31T23:59:59Z", "2024-01-01 00:00:00Z",
    "2024-01-01T00:00:00Zjunk",
  };
  time_t t;

  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    cr_assert_eq (s3_parse_iso8601 (good[i].s, strlen (good[i].s), &t), 0, "%s", good[i].s);
    cr_assert_eq (t, good[i].t, "%s", good[i].s);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    t = 42;
    cr_assert_eq (s3_parse_iso8601 (bad[i], strlen (bad[i]), &t), -EBADMSG, "%s", bad[i]);
    cr_assert_eq (t, 42);
  }
}

Test (xml_list, bad_last_modified_is_refused)
{
  struct vmdr_s3_list_page pg = { 0 };

  cr_assert_eq (parse_list ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                            "<Contents><Key>k</Key><Size>1</Size>"
                            "<LastModified>yesterday</LastModified></Contents></ListBucketResult>",
                            &pg), -EBADMSG);
}

Test (xml_multipart, upload_id)
{
  const char *doc = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult xmlns=\"x\">"
                    "<Bucket>b</Bucket><Key>k</Key><UploadId>2~a&amp;b</UploadId>"
                    "</InitiateMultipartUploadResult>";
  char *id = NULL;

  cr_assert_eq (s3_parse_upload_id (doc, strlen (doc), &id), 0);
  cr_assert_str_eq (id, "2~a&b");
  free (id);
  id = NULL;
  doc = "<InitiateMultipartUploadResult><Key>k</Key></InitiateMultipartUploadResult>";
  cr_assert_eq (s3_parse_upload_id (doc, strlen (doc), &id), -EBADMSG, "no id");
  doc = "<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>";
  cr_assert_eq (s3_parse_upload_id (doc, strlen (doc), &id), -EBADMSG, "empty id");
  doc = "<Error><Code>AccessDenied</Code></Error>";
  cr_assert_eq (s3_parse_upload_id (doc, strlen (doc), &id), -EBADMSG, "an error");
  doc = "<InitiateMultipartUploadResult><UploadId>a</UploadId><UploadId>b</UploadId>"
        "</InitiateMultipartUploadResult>";
  cr_assert_eq (s3_parse_upload_id (doc, strlen (doc), &id), -EBADMSG, "two ids");
  doc = "<InitiateMultipartUploadResult><UploadId>a</UploadId>";
  cr_assert_eq (s3_parse_upload_id (doc, strlen (doc), &id), -EBADMSG, "truncated");
  cr_assert_null (id);
}

Test (xml_multipart, complete_or_late_error)
{
  const char *ok = "<CompleteMultipartUploadResult><Location>l</Location><Bucket>b</Bucket>"
                   "<Key>k</Key><ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>"
                   "</CompleteMultipartUploadResult>";
  const char *err = "<Error><Code>InternalError</Code><Message>We encountered an internal "
                    "error. Please try again.</Message></Error>";
  struct vmdr_s3_status st = { .http = 200 };
  char etag[128];

  cr_assert_eq (s3_parse_complete (ok, strlen (ok), etag, &st), 0);
  cr_assert_str_eq (etag, "3858f62230ac3c915f300c664312c11f-9");
  cr_assert_eq (s3_parse_complete (err, strlen (err), etag, &st), 1, "200 with an <Error>");
  cr_assert_str_eq (st.code, "InternalError");
  cr_assert_eq (s3_parse_complete ("<Other/>", 8, etag, &st), -EBADMSG);
  cr_assert_eq (s3_parse_complete ("", 0, etag, &st), -EBADMSG, "an empty 200");
}

Test (xml_multipart, uploads)
{
  const char *doc =
    "<ListMultipartUploadsResult><Bucket>b</Bucket><KeyMarker></KeyMarker>"
    "<NextKeyMarker>p/k2</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker>"
    "<IsTruncated>true</IsTruncated>"
    "<Upload><Key>p/k1</Key><UploadId>id1</UploadId><Initiator><ID>x</ID></Initiator>"
    "<Initiated>2024-01-01T00:00:00.000Z</Initiated></Upload>"
    "<Upload><Key>p/k2</Key><UploadId>id2</UploadId></Upload>"
    "</ListMultipartUploadsResult>";
  struct vmdr_s3_upload_page pg = { 0 };

  cr_assert_eq (s3_parse_uploads (doc, strlen (doc), &pg), 0);
  cr_assert_eq (pg.n_uploads, 2);
  cr_assert_str_eq (pg.uploads[0].key, "p/k1");
  cr_assert_str_eq (pg.uploads[0].upload_id, "id1");
  cr_assert_eq (pg.uploads[0].initiated, 1704067200);
  cr_assert_eq (pg.uploads[1].initiated, -1);
  cr_assert (pg.truncated);
  cr_assert_str_eq (pg.next_key_marker, "p/k2");
  cr_assert_str_eq (pg.next_upload_id_marker, "id2");
  vmdr_s3_upload_page_clear (&pg);
  vmdr_s3_upload_page_clear (&pg);

  doc = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
        "</ListMultipartUploadsResult>";
  cr_assert_eq (s3_parse_uploads (doc, strlen (doc), &pg), 0);
  cr_assert_eq (pg.n_uploads, 0);
  cr_assert_null (pg.next_key_marker);
  vmdr_s3_upload_page_clear (&pg);

  static const char *const bad[] = {
    "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated></ListMultipartUploadsResult>",
    "<ListMultipartUploadsResult></ListMultipartUploadsResult>",
    "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
    "<Upload><Key>k</Key></Upload></ListMultipartUploadsResult>",
    "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
    "<Upload><UploadId>i</UploadId></Upload></ListMultipartUploadsResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
    "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>k</Key>",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pg.n_uploads = 42;
    cr_assert_eq (s3_parse_uploads (bad[i], strlen (bad[i]), &pg), -EBADMSG, "%s", bad[i]);
    cr_assert_eq (pg.n_uploads, 42, "untouched on failure");
  }
}

/* ---- the AWS shared files ------------------------------------------------- */

static const char ini_doc[] =
  "# a comment\n"
  "[default]\n"
  "aws_access_key_id = AKIDDEFAULT\n"
  "aws_secret_access_key=secret/default+=\n"
  "\n"
  "[ vmdr ]\r\n"
  "; another comment\r\n"
  "  aws_access_key_id = INDENTED_IS_A_SUBSECTION\r\n"
  "aws_access_key_id = AKIDVMDR\r\n"
  "aws_secret_access_key = secret vmdr\r\n"
  "aws_access_key_id = SECOND_IS_IGNORED\r\n"
  "not a setting\n"
  "[profile other]\n"
  "region = eu-west-3\n"
  "s3 =\n"
  "  endpoint_url = http://nested:1\n"
  "endpoint_url = http://top:2\n"
  "[broken\n"
  "region = nowhere\n";

Test (ini, lookups)
{
  char out[64];
  size_t n = strlen (ini_doc);

  cr_assert_eq (s3_ini_get (ini_doc, n, "default", "aws_access_key_id", out, sizeof out), 1);
  cr_assert_str_eq (out, "AKIDDEFAULT");
  cr_assert_eq (s3_ini_get (ini_doc, n, "default", "aws_secret_access_key", out, sizeof out), 1);
  cr_assert_str_eq (out, "secret/default+=", "'=' inside a value is kept");
  cr_assert_eq (s3_ini_get (ini_doc, n, "vmdr", "aws_access_key_id", out, sizeof out), 1);
  cr_assert_str_eq (out, "AKIDVMDR", "indented lines and later duplicates are skipped");
  cr_assert_eq (s3_ini_get (ini_doc, n, "vmdr", "aws_secret_access_key", out, sizeof out), 1);
  cr_assert_str_eq (out, "secret vmdr", "CR and blanks trimmed, inner blanks kept");
  cr_assert_eq (s3_ini_get (ini_doc, n, "profile other", "endpoint_url", out, sizeof out), 1);
  cr_assert_str_eq (out, "http://top:2", "not the s3 sub-section's");
  cr_assert_eq (s3_ini_get (ini_doc, n, "vmdr", "region", out, sizeof out), 0);
  cr_assert_eq (s3_ini_get (ini_doc, n, "nosuch", "region", out, sizeof out), 0);
  cr_assert_eq (s3_ini_get (ini_doc, n, "broken", "region", out, sizeof out), 0);
  cr_assert_eq (s3_ini_get (ini_doc, n, "profile other", NULL, NULL, 0), 1);
  cr_assert_eq (s3_ini_get (ini_doc, n, "other", NULL, NULL, 0), 0);
  cr_assert_eq (s3_ini_get (ini_doc, n, "default", "aws_access_key_id", out, 5), -ENAMETOOLONG);
  cr_assert_eq (s3_ini_get ("", 0, "default", "x", out, sizeof out), 0);
  /* a length that cuts the text: nothing beyond it is read */
  cr_assert_eq (s3_ini_get (ini_doc, 30, "default", "aws_access_key_id", out, sizeof out), 0);
}

static char ini_dir[64];

static const char *
write_tmp (const char *name, const char *text)
{
  static char path[128];
  FILE *f;

  if (!ini_dir[0]) {
    snprintf (ini_dir, sizeof ini_dir, "/tmp/vmdr-s3-unit.XXXXXX");
    cr_assert_not_null (mkdtemp (ini_dir));
  }
  snprintf (path, sizeof path, "%s/%s", ini_dir, name);
  cr_assert_not_null (f = fopen (path, "w"));
  fputs (text, f);
  fclose (f);
  return path;
}

static void
rm_tmp (void)
{
  char cmd[128];

  if (ini_dir[0]) {
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", ini_dir);
    cr_assert_eq (system (cmd), 0);
  }
}

TestSuite (profiles, .init = clean_env, .fini = rm_tmp);

Test (profiles, credentials_file_when_the_environment_has_none)
{
  struct vmdr_s3_config cfg = { 0 };

  unsetenv ("AWS_ACCESS_KEY_ID");
  unsetenv ("AWS_SECRET_ACCESS_KEY");
  setenv ("AWS_SHARED_CREDENTIALS_FILE", write_tmp ("credentials", ini_doc), 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.access_key_id, "AKIDDEFAULT");
  cr_assert_str_eq (cfg.secret_access_key, "secret/default+=");
  cr_assert_null (cfg.session_token);
  vmdr_s3_config_clear (&cfg);

  setenv ("AWS_PROFILE", "vmdr", 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), -EINVAL, "a secret with a space is refused");
}

Test (profiles, the_environment_wins)
{
  struct vmdr_s3_config cfg = { 0 };

  setenv ("AWS_SHARED_CREDENTIALS_FILE",
          write_tmp ("credentials", "[p]\naws_access_key_id = FILEKEY\n"
                     "aws_secret_access_key = FILESECRET\naws_session_token = FILETOKEN\n"), 1);
  setenv ("AWS_PROFILE", "p", 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.access_key_id, "AKIDEXAMPLE");
  cr_assert_null (cfg.session_token, "no token from the file beside keys from the environment");
  vmdr_s3_config_clear (&cfg);

  unsetenv ("AWS_SECRET_ACCESS_KEY");           /* half a pair in the environment */
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.access_key_id, "FILEKEY");
  cr_assert_str_eq (cfg.secret_access_key, "FILESECRET");
  cr_assert_str_eq (cfg.session_token, "FILETOKEN");
  vmdr_s3_config_clear (&cfg);
}

Test (profiles, config_file_region_and_endpoint)
{
  struct vmdr_s3_config cfg = { 0 };

  unsetenv ("AWS_ACCESS_KEY_ID");
  unsetenv ("AWS_SECRET_ACCESS_KEY");
  setenv ("AWS_PROFILE", "site2", 1);
  setenv ("AWS_SHARED_CREDENTIALS_FILE",
          write_tmp ("credentials", "[site2]\naws_access_key_id = K2\naws_secret_access_key = S2\n"), 1);
  setenv ("AWS_CONFIG_FILE",
          write_tmp ("config", "[default]\nregion = us-west-1\n"
                     "[profile site2]\nregion = eu-central-1\nendpoint_url = http://10.0.0.1:7480\n"), 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.region, "eu-central-1");
  cr_assert_str_eq (cfg.endpoint, "http://10.0.0.1:7480");
  cr_assert_eq (cfg.addressing, VMDR_S3_PATH_STYLE);
  cr_assert_str_eq (cfg.access_key_id, "K2");
  vmdr_s3_config_clear (&cfg);

  setenv ("AWS_REGION", "ap-south-1", 1);
  setenv ("AWS_ENDPOINT_URL", "http://env:1", 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.region, "ap-south-1", "the environment wins");
  cr_assert_str_eq (cfg.endpoint, "http://env:1");
  vmdr_s3_config_clear (&cfg);
}

Test (profiles, credentials_from_the_config_file)
{
  struct vmdr_s3_config cfg = { 0 };

  unsetenv ("AWS_ACCESS_KEY_ID");
  unsetenv ("AWS_SECRET_ACCESS_KEY");
  /* a key without its secret in the credentials file is not half-used */
  setenv ("AWS_SHARED_CREDENTIALS_FILE", write_tmp ("credentials", "[default]\naws_access_key_id = HALF\n"), 1);
  setenv ("AWS_CONFIG_FILE",
          write_tmp ("config", "[default]\naws_access_key_id = CK\naws_secret_access_key = CS\n"), 1);
  cr_assert_eq (vmdr_s3_config_from_env (&cfg), 0);
  cr_assert_str_eq (cfg.access_key_id, "CK");
  cr_assert_str_eq (cfg.secret_access_key, "CS");
  vmdr_s3_config_clear (&cfg);
}

Test (profiles, missing_profile_or_keys)
{
  struct vmdr_s3_config cfg = { .region = (char *) "sentinel" };
  char why[256];

  unsetenv ("AWS_ACCESS_KEY_ID");
  unsetenv ("AWS_SECRET_ACCESS_KEY");
  setenv ("AWS_SHARED_CREDENTIALS_FILE", write_tmp ("credentials", "[default]\n"
          "aws_access_key_id = K\naws_secret_access_key = TOPSECRET\n"), 1);
  setenv ("AWS_PROFILE", "nosuch", 1);
  cr_assert_eq (vmdr_s3_config_load (&cfg, why, sizeof why), -ENOKEY);
  cr_assert_str_eq (why, "no profile 'nosuch' in the AWS credentials or config file");
  cr_assert_str_eq (cfg.region, "sentinel");
  unsetenv ("AWS_PROFILE");
  setenv ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
  cr_assert_eq (vmdr_s3_config_load (&cfg, why, sizeof why), -ENOKEY);
  cr_assert_not_null (strstr (why, "no S3 credentials"), "%s", why);
  setenv ("AWS_PROFILE", "bad profile", 1);
  cr_assert_eq (vmdr_s3_config_load (&cfg, why, sizeof why), -EINVAL);
}

Test (profiles, unreadable_or_huge_files)
{
  struct vmdr_s3_config cfg = { 0 };
  char why[512], big[S3_INI_FILE_MAX + 2];

  unsetenv ("AWS_ACCESS_KEY_ID");
  memset (big, '#', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  setenv ("AWS_SHARED_CREDENTIALS_FILE", write_tmp ("huge", big), 1);
  cr_assert_eq (vmdr_s3_config_load (&cfg, why, sizeof why), -EFBIG);
  cr_assert_not_null (strstr (why, "huge"), "the file is named: %s", why);
  setenv ("AWS_SHARED_CREDENTIALS_FILE", "/", 1);
  cr_assert_eq (vmdr_s3_config_load (&cfg, why, sizeof why), -EISDIR);
  /* the secret of a file that could not be used is not in the message */
  setenv ("AWS_SHARED_CREDENTIALS_FILE",
          write_tmp ("long", "[default]\naws_access_key_id = K\naws_secret_access_key = "
                     "TOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRET"
                     "TOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRETTOPSECRET\n"), 1);
  cr_assert_eq (vmdr_s3_config_load (&cfg, why, sizeof why), -ENAMETOOLONG);
  cr_assert_null (strstr (why, "TOPSECRET"), "%s", why);
}

/* ---- the backend's pure parts --------------------------------------------- */

Test (location, good)
{
  static const struct { const char *loc, *bucket, *prefix; } good[] = {
    { "bkt", "bkt", "" },
    { "bkt/", "bkt", "" },
    { "bkt/p", "bkt", "p/" },
    { "bkt/p/", "bkt", "p/" },
    { "my.bucket-1/site-a/vmdr_2", "my.bucket-1", "site-a/vmdr_2/" },
  };
  char bucket[VMDR_S3_BUCKET_MAX + 1], prefix[S3_PREFIX_MAX + 2];

  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    cr_assert_eq (s3_location_parse (good[i].loc, bucket, prefix), 0, "%s", good[i].loc);
    cr_assert_str_eq (bucket, good[i].bucket);
    cr_assert_str_eq (prefix, good[i].prefix);
  }
}

Test (location, bad)
{
  char long_prefix[S3_PREFIX_MAX + 8];
  const char *bad[] = {
    "", "/p", "Bad_Bucket/p", "ab/p", "bkt//p", "bkt/p//", "bkt/../p", "bkt/./p",
    "bkt/p/..", "bkt/p?x=1", "bkt/p q", "bkt/p\n", "192.168.1.1/p", long_prefix,
    "a-bucket-name-that-is-much-too-long-for-s3-rules-0123456789abcdef/p",
  };
  char bucket[VMDR_S3_BUCKET_MAX + 1] = "x", prefix[S3_PREFIX_MAX + 2] = "y";

  memcpy (long_prefix, "bkt/", 4);
  memset (long_prefix + 4, 'p', S3_PREFIX_MAX + 1);
  long_prefix[S3_PREFIX_MAX + 5] = '\0';
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq (s3_location_parse (bad[i], bucket, prefix), -EINVAL, "%s", bad[i]);
    cr_assert_str_eq (bucket, "x");
    cr_assert_str_eq (prefix, "y");
  }
}

TestSuite (retry, .init = clean_env);

Test (retry, defaults_and_environment)
{
  struct s3_retry r = { 0 };
  const char *name = NULL;

  unsetenv ("VMDR_S3_RETRY_MAX");
  unsetenv ("VMDR_S3_RETRY_SECONDS");
  cr_assert_eq (s3_retry_from_env (&r, &name), 0);
  cr_assert_eq (r.attempts, S3_RETRY_ATTEMPTS_DEFAULT);
  cr_assert_float_eq (r.seconds, S3_RETRY_SECONDS_DEFAULT, 1e-9);
  cr_assert_float_eq (r.refused_seconds, S3_RETRY_REFUSED_DEFAULT, 1e-9);
  setenv ("VMDR_S3_RETRY_MAX", "3", 1);
  setenv ("VMDR_S3_RETRY_SECONDS", "0.5", 1);
  cr_assert_eq (s3_retry_from_env (&r, &name), 0);
  cr_assert_eq (r.attempts, 3);
  cr_assert_float_eq (r.seconds, 0.5, 1e-9);
  cr_assert_float_eq (r.refused_seconds, 0.5, 1e-9, "refused never outlasts the total");

  static const struct { const char *var, *value; } bad[] = {
    { "VMDR_S3_RETRY_MAX", "0" }, { "VMDR_S3_RETRY_MAX", "101" },
    { "VMDR_S3_RETRY_MAX", "-1" }, { "VMDR_S3_RETRY_MAX", "3x" },
    { "VMDR_S3_RETRY_SECONDS", "-1" }, { "VMDR_S3_RETRY_SECONDS", "nan" },
    { "VMDR_S3_RETRY_SECONDS", "1e9" }, { "VMDR_S3_RETRY_SECONDS", "5s" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct s3_retry before = r;
    unsetenv ("VMDR_S3_RETRY_MAX");
    unsetenv ("VMDR_S3_RETRY_SECONDS");
    setenv (bad[i].var, bad[i].value, 1);
    cr_assert_eq (s3_retry_from_env (&r, &name), -EINVAL, "%s=%s", bad[i].var, bad[i].value);
    cr_assert_str_eq (name, bad[i].var);
    cr_assert_eq (memcmp (&before, &r, sizeof r), 0, "untouched on failure");
  }
}

Test (retry, backoff_is_bounded_full_jitter)
{
  struct s3_retry r = { .attempts = 10, .seconds = 60, .base_ms = 100, .cap_ms = 20000 };

  /* the ceiling doubles from base, up to cap; draws fall in [0, ceiling] */
  for (unsigned n = 0; n < 40; n++) {
    unsigned ceiling = n >= 8 ? 20000 : 100u << n;
    cr_assert_eq (s3_backoff_ms (&r, n, 0), 0, "full jitter reaches 0");
    cr_assert_eq (s3_backoff_ms (&r, n, ceiling), ceiling, "and the ceiling (n=%u)", n);
    cr_assert_eq (s3_backoff_ms (&r, n, UINT64_MAX), UINT64_MAX % (ceiling + 1));
    for (uint64_t x = 1; x < 1000000; x = x * 7 + 3)
      cr_assert_leq (s3_backoff_ms (&r, n, x * 2654435761u), ceiling);
  }
  /* the sum of the worst sleeps of every default retry fits the budget */
  unsigned long worst = 0;
  for (unsigned n = 0; n + 1 < S3_RETRY_ATTEMPTS_DEFAULT; n++)
    worst += s3_backoff_ms (&r, n, 20000);
  cr_assert_leq (worst, (unsigned long) (S3_RETRY_SECONDS_DEFAULT * 1000));
}

Test (retry, what_is_retried)
{
  struct vmdr_s3_status st = { 0 };

  cr_assert (s3_retryable (-EAGAIN, &(struct vmdr_s3_status) { .http = 503, .code = "SlowDown" }));
  cr_assert (s3_retryable (-EAGAIN, &(struct vmdr_s3_status) { .http = 429 }));
  cr_assert (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 500, .code = "InternalError" }));
  cr_assert (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 502 }));
  cr_assert (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 408 }));
  cr_assert (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 409, .code = "ConditionalRequestConflict" }));
  cr_assert (s3_retryable (-ETIMEDOUT, &st));
  cr_assert (s3_retryable (-ECONNRESET, &st));
  cr_assert (s3_retryable (-ECONNREFUSED, &st));
  cr_assert (s3_retry_refused (-ECONNREFUSED));
  cr_assert (s3_retry_refused (-EHOSTUNREACH));
  cr_assert_not (s3_retry_refused (-ECONNRESET));
  cr_assert_not (s3_retryable (-EACCES, &(struct vmdr_s3_status) { .http = 403 }));
  cr_assert_not (s3_retryable (-ENOENT, &(struct vmdr_s3_status) { .http = 404 }));
  cr_assert_not (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 400 }));
  cr_assert_not (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 412 }));
  cr_assert_not (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 501, .code = "NotImplemented" }));
  cr_assert_not (s3_retryable (-EIO, &(struct vmdr_s3_status) { .http = 409, .code = "BucketNotEmpty" }));
  cr_assert_not (s3_retryable (-ERANGE, &(struct vmdr_s3_status) { .http = 416 }));
  cr_assert_not (s3_retryable (-EPROTO, &st), "a TLS failure does not pass");
  cr_assert_not (s3_retryable (-EFBIG, &st));
  cr_assert_not (s3_retryable (-EINVAL, &st));
}

/* ---- the backend without a server ---------------------------------------- */

Test (retry, an_unreachable_endpoint_fails_within_the_bound)
{
  struct vmdr_backend *b = (struct vmdr_backend *) &b;
  struct timespec t0, t1;

  setenv ("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
  setenv ("VMDR_S3_RETRY_MAX", "4", 1);
  setenv ("VMDR_S3_RETRY_SECONDS", "1", 1);
  clock_gettime (CLOCK_MONOTONIC, &t0);
  cr_assert_eq (vmdr_backend_open ("s3://bkt/p", &b), -ECONNREFUSED);
  clock_gettime (CLOCK_MONOTONIC, &t1);
  cr_assert_eq (b, (struct vmdr_backend *) &b, "output untouched");
  cr_assert_lt (t1.tv_sec - t0.tv_sec, 3, "the retries are bounded");
  cr_assert_not_null (vmdr_backend_error ());
  cr_assert_not_null (strstr (vmdr_backend_error (), "gave up after"), "%s", vmdr_backend_error ());
  cr_assert_null (strstr (vmdr_backend_error (), "wJalrXUtnFEMI"), "no secret in the text");
}

Test (location, errors_of_open_have_words)
{
  struct vmdr_backend *b = NULL;

  clean_env ();
  cr_assert_eq (vmdr_backend_open ("s3://Bad_Bucket/p", &b), -EINVAL);
  cr_assert_not_null (strstr (vmdr_backend_error (), "s3://BUCKET[/PREFIX]"));
  unsetenv ("AWS_SECRET_ACCESS_KEY");
  cr_assert_eq (vmdr_backend_open ("s3://bkt/p", &b), -ENOKEY);
  cr_assert_not_null (strstr (vmdr_backend_error (), "no S3 credentials"));
  setenv ("AWS_SECRET_ACCESS_KEY", "x", 1);
  setenv ("VMDR_S3_RETRY_MAX", "many", 1);
  cr_assert_eq (vmdr_backend_open ("s3://bkt/p", &b), -EINVAL);
  cr_assert_str_eq (vmdr_backend_error (), "invalid VMDR_S3_RETRY_MAX");
  unsetenv ("VMDR_S3_RETRY_MAX");
  setenv ("VMDR_S3_PART_SIZE", "1M", 1);
  cr_assert_eq (vmdr_backend_open ("s3://bkt/p", &b), -EINVAL);
  cr_assert_not_null (strstr (vmdr_backend_error (), "VMDR_S3_PART_SIZE"));
  /* a local open clears the words of the S3 one */
  cr_assert_eq (vmdr_backend_open ("/nonexistent/dir", &b), -ENOENT);
  cr_assert_null (vmdr_backend_error ());
}
