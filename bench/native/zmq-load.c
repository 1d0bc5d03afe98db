/*
 * zmq-load: a load generator for aiozmq.rpc servers that costs (almost)
 * nothing: one DEALER, requests encoded once (only the request id changes),
 * N calls kept in flight for a while, every reply checked, every latency
 * counted in a log-linear histogram. Built by the bench from this file
 * (bench/lib/native.ts: gcc -O2 ... -lzmq, Debian's libzmq3-dev).
 *
 *   zmq-load ENDPOINT IN_FLIGHT DURATION_MS [SAMPLES]
 *
 * Sends `ping("ping")` (docs/wire-contract.rst, "RPC": header, name, args, kwargs)
 * and expects the reply header with is_error 0 and the payload "ping". Prints
 * one JSON object on stdout: completed calls, bad replies, calls lost (no
 * reply within 5 s of the end), elapsed seconds, the rate, the latency
 * quantiles (microseconds), the histogram ([lower_us, upper_us, count] of
 * the buckets that are not empty) and up to SAMPLES latencies taken evenly
 * from all of them (default 2000), so that a figure's statistics are values
 * that were really measured. Exit code 0 when every call got a good reply,
 * 1 otherwise, 2 for bad arguments or a socket error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define SUB_BITS 5                 /* 32 sub-buckets per power of two: about 3 % wide */
#define SUB (1 << SUB_BITS)
#define BUCKETS (40 * SUB)
#define DRAIN_NS 5000000000LL

static uint64_t hist[BUCKETS];

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The bucket of a latency in nanoseconds: exact below SUB ns, then SUB buckets per power of two. */
static int bucket_of(uint64_t v) {
  if (v < SUB) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - SUB_BITS;
  int b = (shift + 1) * SUB + (int)((v >> shift) - SUB);
  return b < BUCKETS ? b : BUCKETS - 1;
}

static uint64_t bucket_low(int b) {
  if (b < SUB) return (uint64_t)b;
  int shift = b / SUB - 1;
  return ((uint64_t)(b % SUB) + SUB) << shift;
}

static uint64_t bucket_high(int b) { return b + 1 < BUCKETS ? bucket_low(b + 1) : bucket_low(b) * 2; }

/* The q-quantile by nearest rank, as the bucket's middle, in microseconds. */
static double quantile_us(uint64_t total, double q) {
  if (!total) return 0;
  uint64_t rank = (uint64_t)(q * (double)total + 0.999999);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (int b = 0; b < BUCKETS; b++) {
    seen += hist[b];
    if (seen >= rank) return (bucket_low(b) + bucket_high(b)) / 2.0 / 1000.0;
  }
  return 0;
}

static void die(const char *what) {
  fprintf(stderr, "zmq-load: %s: %s\n", what, zmq_strerror(zmq_errno()));
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: zmq-load ENDPOINT IN_FLIGHT DURATION_MS [SAMPLES]\n");
    return 2;
  }
  const char *endpoint = argv[1];
  long n = strtol(argv[2], NULL, 10), duration_ms = strtol(argv[3], NULL, 10);
  long max_samples = argc == 5 ? strtol(argv[4], NULL, 10) : 2000;
  if (n < 1 || n > 65536 || duration_ms < 1 || max_samples < 0) {
    fprintf(stderr, "zmq-load: IN_FLIGHT must be 1..65536, DURATION_MS and SAMPLES positive\n");
    return 2;
  }
  void *ctx = zmq_ctx_new();
  void *s = zmq_socket(ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
  zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
  if (zmq_connect(s, endpoint) != 0) die("connect");

  /* The request, encoded once: header (u16 pid, u16 random, u32 id, f64 time), name, args ["ping"], kwargs {}. */
  unsigned char header[16] = {0};
  uint16_t pid = (uint16_t)getpid(), rnd = (uint16_t)(now_ns() & 0xffff);
  memcpy(header, &pid, 2); /* little-endian on the machines this runs on, as the codec writes it */
  memcpy(header + 2, &rnd, 2);
  double t = (double)time(NULL);
  memcpy(header + 8, &t, 8);
  static const unsigned char name[] = "ping", args[] = {0x91, 0xa4, 'p', 'i', 'n', 'g'}, kwargs[] = {0x80};
  static const unsigned char expect[] = {0xa4, 'p', 'i', 'n', 'g'};

  /* Slot s carries the ids s, s+n, s+2n...: a reply's slot is its id modulo n. */
  int64_t *sent_at = calloc((size_t)n, sizeof *sent_at);
  uint32_t *next_id = calloc((size_t)n, sizeof *next_id);
  size_t cap = 1 << 16;
  uint32_t *lat = malloc(cap * sizeof *lat); /* every latency, in ns (capped at 4 s), for the samples */
  size_t nlat = 0;
  uint64_t done = 0, bad = 0;
  long outstanding = 0;

#define SEND(slot)                                                                   \
  do {                                                                               \
    uint32_t id_ = next_id[slot];                                                    \
    next_id[slot] += (uint32_t)n;                                                    \
    memcpy(header + 4, &id_, 4);                                                     \
    sent_at[slot] = now_ns();                                                        \
    if (zmq_send(s, header, sizeof header, ZMQ_SNDMORE) < 0 ||                       \
        zmq_send(s, name, 4, ZMQ_SNDMORE) < 0 || zmq_send(s, args, sizeof args, ZMQ_SNDMORE) < 0 || \
        zmq_send(s, kwargs, sizeof kwargs, 0) < 0)                                   \
      die("send");                                                                   \
    outstanding++;                                                                   \
  } while (0)

  for (long i = 0; i < n; i++) next_id[i] = (uint32_t)i;
  int64_t start = now_ns(), end = start + duration_ms * 1000000LL;
  for (long i = 0; i < n; i++) SEND(i);

  zmq_msg_t part;
  zmq_msg_init(&part);
  while (outstanding > 0) {
    int64_t now = now_ns();
    if (now > end + DRAIN_NS) break;
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 100) < 0) die("poll");
    if (!(item.revents & ZMQ_POLLIN)) continue;
    /* One reply: header (17 bytes), payload; anything else is a bad reply. */
    int frames = 0, good = 1;
    uint32_t id = 0;
    for (;;) {
      if (zmq_msg_recv(&part, s, 0) < 0) die("receive");
      size_t len = zmq_msg_size(&part);
      const unsigned char *d = zmq_msg_data(&part);
      if (frames == 0) {
        if (len == 17 && d[16] == 0) memcpy(&id, d + 4, 4);
        else good = 0;
      } else if (frames == 1) {
        if (len != sizeof expect || memcmp(d, expect, len) != 0) good = 0;
      }
      frames++;
      if (!zmq_msg_more(&part)) break;
    }
    if (frames != 2) good = 0;
    long slot = (long)(id % (uint32_t)n);
    if (!good || id + (uint32_t)n != next_id[slot]) {
      bad++; /* a reply we cannot match is not a completion; its slot stays open until the drain ends */
      continue;
    }
    int64_t t1 = now_ns();
    uint64_t ns = (uint64_t)(t1 - sent_at[slot]);
    hist[bucket_of(ns)]++;
    if (nlat == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
    lat[nlat++] = ns > 4000000000ULL ? 4000000000U : (uint32_t)ns;
    done++;
    outstanding--;
    if (t1 < end) SEND(slot);
  }
  double elapsed = (now_ns() - start) / 1e9;

  printf("{\"inFlight\":%ld,\"completed\":%llu,\"bad\":%llu,\"lost\":%ld,\"elapsedS\":%.6f,\"rate\":%.1f,", n,
         (unsigned long long)done, (unsigned long long)bad, outstanding, elapsed, done / elapsed);
  printf("\"p50Us\":%.2f,\"p90Us\":%.2f,\"p99Us\":%.2f,\"p999Us\":%.2f,", quantile_us(done, 0.5), quantile_us(done, 0.9),
         quantile_us(done, 0.99), quantile_us(done, 0.999));
  printf("\"histogram\":[");
  int first = 1;
  for (int b = 0; b < BUCKETS; b++) {
    if (!hist[b]) continue;
    printf("%s[%.3f,%.3f,%llu]", first ? "" : ",", bucket_low(b) / 1000.0, bucket_high(b) / 1000.0, (unsigned long long)hist[b]);
    first = 0;
  }
  printf("],\"samplesUs\":[");
  size_t take = nlat < (size_t)max_samples ? nlat : (size_t)max_samples;
  for (size_t i = 0; i < take; i++) printf("%s%.3f", i ? "," : "", lat[i * nlat / take] / 1000.0);
  printf("]}\n");
  zmq_msg_close(&part);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return bad || outstanding ? 1 : 0;
}
