/*
 * zmq-echo: the limit of this machine's ZeroMQ for the RPC figure, a bare
 * libzmq ROUTER that answers aiozmq.rpc requests with no msgpack and no
 * dispatch: it receives a request (envelope, 16-byte header, name, args,
 * kwargs), sends back the envelope, the header with is_error 0 appended, and
 * the args frame without its first byte (for `ping("ping")`, a msgpack array
 * of one string, that is the string: the reply `ping` gives). Built by the
 * bench from this file (bench/lib/native.ts).
 *
 *   zmq-echo ENDPOINT
 *
 * Prints "ready" once bound; runs until killed.
 */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define MAX_FRAMES 16

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: zmq-echo ENDPOINT\n");
    return 2;
  }
  void *ctx = zmq_ctx_new();
  void *s = zmq_socket(ctx, ZMQ_ROUTER);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
  zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
  if (zmq_bind(s, argv[1]) != 0) {
    fprintf(stderr, "zmq-echo: bind %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
    return 2;
  }
  printf("ready\n");
  fflush(stdout);
  zmq_msg_t f[MAX_FRAMES];
  for (;;) {
    int k = 0, more = 1;
    while (more) {
      zmq_msg_t *m = &f[k < MAX_FRAMES ? k : MAX_FRAMES - 1];
      if (k >= MAX_FRAMES) zmq_msg_close(m);
      zmq_msg_init(m);
      if (zmq_msg_recv(m, s, 0) < 0) return 1;
      more = zmq_msg_more(m);
      if (k < MAX_FRAMES) k++;
    }
    /* envelope = frames before the 16-byte header; then header, name, args, kwargs */
    int h = -1;
    for (int i = 0; i < k; i++)
      if (zmq_msg_size(&f[i]) == 16) {
        h = i;
        break;
      }
    if (h >= 0 && h + 2 < k && zmq_msg_size(&f[h + 2]) >= 1) {
      for (int i = 0; i < h; i++) zmq_msg_send(&f[i], s, ZMQ_SNDMORE); /* sending hands the frame over */
      unsigned char header[17];
      memcpy(header, zmq_msg_data(&f[h]), 16);
      header[16] = 0;
      zmq_send(s, header, sizeof header, ZMQ_SNDMORE);
      const unsigned char *args = zmq_msg_data(&f[h + 2]);
      zmq_send(s, args + 1, zmq_msg_size(&f[h + 2]) - 1, 0);
      for (int i = h; i < k; i++) zmq_msg_close(&f[i]);
    } else {
      for (int i = 0; i < k; i++) zmq_msg_close(&f[i]); /* not a request: dropped */
    }
  }
}
