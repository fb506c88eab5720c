// Command peer is mstls's quic-go interop peer (issue 10): one binary, two modes.
//
//	peer -mode server -addr 127.0.0.1:0 -alpn mstls-test -cert c.pem -key k.pem [-retry]
//	peer -mode client -addr 127.0.0.1:4433 -alpn mstls-test -ca ca.pem -sni localhost \
//	     -streams 8 -size 1048576 -command echo [-cidlen 8] [-resume [-early]]
//
// It is written against quic-go 0.29's public API only and builds offline from
// Debian's golang-github-lucas-clemente-quic-go-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o peer peer.go
//
// # Stream protocol
//
// Every bidirectional stream opened by the client starts with one command line
// (at most maxCommandLine bytes, ending in "\n"); the server answers it:
//
//	echo\n<data><FIN>     the server sends <data> back, then FIN
//	sha256\n<data><FIN>   the server sends "<hex SHA-256 of data> <length>\n", then FIN
//	send <n>\n<FIN>       the server sends n bytes of pattern(stream seed 0), then FIN
//
// The client's payload on its k-th stream (k = 0, 1, ...) is pattern(k, size):
// byte i is (i + 13*k) mod 251, so the other side can check it without a copy.
//
// # Output
//
// Both modes write JSON objects to stdout, one per line.  The server starts with
// {"event":"listening","addr":...}, then one "handshake" per connection, one
// "stream" per stream served and one "closed" per connection that ended.  The
// server exits when its stdin reaches EOF (so it never outlives its test) or on
// SIGTERM.  The client prints one {"event":"result",...} per connection it made
// (two with -resume) and exits 0 only if every stream finished.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	quic "github.com/lucas-clemente/quic-go"
)

const (
	maxCommandLine = 64      // bytes of a stream's command line, "\n" included
	maxSendSize    = 1 << 30 // largest n a "send <n>" command may ask for
	patternModulus = 251     // pattern byte i of seed k: (i + patternStride*k) % patternModulus
	patternStride  = 13
	copyBuffer     = 64 << 10
)

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

// emit writes one JSON line to stdout; goroutines may call it at once.
func emit(fields map[string]any) {
	out.Lock()
	defer out.Unlock()
	_ = out.enc.Encode(fields)
}

func fatal(format string, args ...any) {
	emit(map[string]any{"event": "fatal", "error": fmt.Sprintf(format, args...)})
	os.Exit(2)
}

// patternReader yields pattern(seed, n) without holding it in memory.
type patternReader struct {
	offset, size int64
	seed         int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.offset >= p.size {
		return 0, io.EOF
	}
	n := int64(len(b))
	if left := p.size - p.offset; n > left {
		n = left
	}
	start := (p.offset + patternStride*p.seed) % patternModulus
	for i := int64(0); i < n; i++ {
		b[i] = byte((start + i) % patternModulus)
	}
	p.offset += n
	return int(n), nil
}

// hashingCounter counts and hashes what is written to it.
type hashingCounter struct {
	n int64
	h hash.Hash
}

func newHashingCounter() *hashingCounter { return &hashingCounter{h: sha256.New()} }

func (c *hashingCounter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return c.h.Write(b)
}

func (c *hashingCounter) hex() string { return hex.EncodeToString(c.h.Sum(nil)) }

func versions(list string) []quic.VersionNumber {
	var vs []quic.VersionNumber
	for _, name := range strings.Split(list, ",") {
		switch strings.TrimSpace(name) {
		case "1":
			vs = append(vs, quic.Version1)
		case "draft29":
			vs = append(vs, quic.VersionDraft29)
		default:
			fatal("-versions: unknown version %q (1, draft29)", name)
		}
	}
	return vs
}

func keyLog(path string) io.Writer {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fatal("-keylog: %v", err)
	}
	return f
}

func main() {
	mode := flag.String("mode", "", "server or client")
	addr := flag.String("addr", "127.0.0.1:0", "server: address to listen on; client: address to dial")
	alpn := flag.String("alpn", "mstls-test", "ALPN protocol")
	certFile := flag.String("cert", "", "server: PEM certificate chain")
	keyFile := flag.String("key", "", "server: PEM private key")
	caFile := flag.String("ca", "", "client: PEM file of trusted authorities")
	sni := flag.String("sni", "localhost", "client: server name (SNI and verification)")
	retry := flag.Bool("retry", false, "server: send a Retry to every new connection")
	streams := flag.Int("streams", 1, "client: concurrent bidirectional streams")
	size := flag.Int64("size", 1<<20, "client: bytes uploaded per stream")
	command := flag.String("command", "echo", "client: echo, sha256 or send")
	cidLen := flag.Int("cidlen", 0, "client: connection ID length (0: quic-go's default for DialAddr)")
	resume := flag.Bool("resume", false, "client: connect twice with a session cache; report resumption")
	early := flag.Bool("early", false, "client, with -resume: the second connection sends its streams as 0-RTT")
	timeout := flag.Duration("timeout", 30*time.Second, "client: deadline of each connection")
	idle := flag.Duration("idle", 10*time.Second, "max_idle_timeout")
	vlist := flag.String("versions", "1", "QUIC versions, comma separated: 1, draft29")
	keylog := flag.String("keylog", os.Getenv("SSLKEYLOGFILE"), "append TLS secrets here")
	flag.Parse()

	config := &quic.Config{
		Versions:             versions(*vlist),
		HandshakeIdleTimeout: *idle,
		MaxIdleTimeout:       *idle,
		ConnectionIDLength:   *cidLen,
	}
	switch *mode {
	case "server":
		if *retry {
			config.RequireAddressValidation = func(net.Addr) bool { return true }
		}
		runServer(*addr, *alpn, *certFile, *keyFile, keyLog(*keylog), config)
	case "client":
		if *command != "echo" && *command != "sha256" && *command != "send" {
			fatal("-command: expected echo, sha256 or send, got %q", *command)
		}
		ok := runClient(clientJob{
			addr: *addr, alpn: *alpn, caFile: *caFile, sni: *sni, streams: *streams,
			size: *size, command: *command, resume: *resume, early: *early, timeout: *timeout,
			keylog: keyLog(*keylog), config: config,
		})
		if !ok {
			os.Exit(1)
		}
	default:
		fatal("-mode: expected server or client, got %q", *mode)
	}
}

// ---- server ------------------------------------------------------------------------------

func runServer(addr, alpn, certFile, keyFile string, keylog io.Writer, config *quic.Config) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fatal("-cert/-key: %v", err)
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
		KeyLogWriter: keylog,
	}
	listener, err := quic.ListenAddr(addr, tlsConf, config)
	if err != nil {
		fatal("listen: %v", err)
	}
	emit(map[string]any{"event": "listening", "addr": listener.Addr().String()})
	var closing atomic.Bool
	go func() { // the test holds our stdin: its end is ours
		_, _ = io.Copy(io.Discard, os.Stdin)
		closing.Store(true)
		_ = listener.Close()
		os.Exit(0)
	}()
	for {
		conn, err := listener.Accept(context.Background())
		if closing.Load() {
			select {} // main's exit is under way
		}
		if err != nil {
			fatal("accept: %v", err)
		}
		go serveConnection(conn)
	}
}

func serveConnection(conn quic.Connection) {
	state := conn.ConnectionState().TLS
	emit(map[string]any{
		"event":   "handshake",
		"alpn":    state.NegotiatedProtocol,
		"cipher":  tls.CipherSuiteName(state.CipherSuite),
		"remote":  conn.RemoteAddr().String(),
		"resumed": state.DidResume,
	})
	for {
		stream, err := conn.AcceptStream(context.Background())
		if err != nil {
			emit(map[string]any{"event": "closed", "error": err.Error()})
			return
		}
		go serveStream(stream)
	}
}

func readCommand(r *bufio.Reader) (string, error) {
	line := make([]byte, 0, maxCommandLine)
	for len(line) < maxCommandLine {
		b, err := r.ReadByte()
		if err != nil {
			return "", fmt.Errorf("command line: %w", err)
		}
		if b == '\n' {
			return string(line), nil
		}
		line = append(line, b)
	}
	return "", errors.New("command line: too long")
}

func serveStream(stream quic.Stream) {
	id := int64(stream.StreamID())
	reader := bufio.NewReaderSize(stream, copyBuffer)
	command, err := readCommand(reader)
	received := newHashingCounter()
	if err == nil {
		err = answer(command, reader, stream, received)
	}
	event := map[string]any{
		"event": "stream", "id": id, "command": command,
		"received_len": received.n, "received_sha256": received.hex(),
	}
	if err != nil {
		event["error"] = err.Error()
		stream.CancelRead(1)
		stream.CancelWrite(1)
	} else {
		err = stream.Close()
		if err != nil {
			event["error"] = err.Error()
		}
	}
	emit(event)
}

// answer runs one command: what it reads goes through received too.
func answer(command string, r io.Reader, w io.Writer, received *hashingCounter) error {
	data := io.TeeReader(r, received)
	buf := make([]byte, copyBuffer)
	switch {
	case command == "echo":
		_, err := io.CopyBuffer(w, data, buf)
		return err
	case command == "sha256":
		if _, err := io.CopyBuffer(io.Discard, data, buf); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "%s %d\n", received.hex(), received.n)
		return err
	case strings.HasPrefix(command, "send "):
		n, err := strconv.ParseInt(command[len("send "):], 10, 64)
		if err != nil || n < 0 || n > maxSendSize {
			return fmt.Errorf("bad send size %q", command)
		}
		if _, err := io.CopyBuffer(io.Discard, data, buf); err != nil {
			return err
		}
		_, err = io.CopyBuffer(w, &patternReader{size: n}, buf)
		return err
	}
	return fmt.Errorf("unknown command %q", command)
}

// ---- client ------------------------------------------------------------------------------

type clientJob struct {
	addr, alpn, caFile, sni, command string
	streams                          int
	size                             int64
	resume, early                    bool
	timeout                          time.Duration
	keylog                           io.Writer
	config                           *quic.Config
}

func runClient(job clientJob) bool {
	tlsConf := &tls.Config{
		ServerName:   job.sni,
		NextProtos:   []string{job.alpn},
		KeyLogWriter: job.keylog,
	}
	if job.caFile != "" {
		pem, err := os.ReadFile(job.caFile)
		if err != nil {
			fatal("-ca: %v", err)
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			fatal("-ca: no certificate in %s", job.caFile)
		}
	}
	connections := 1
	if job.resume {
		tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		connections = 2
	}
	ok := true
	for i := 0; i < connections; i++ {
		ok = clientConnection(job, tlsConf, job.early && i > 0) && ok
	}
	return ok
}

func clientConnection(job clientJob, tlsConf *tls.Config, early bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), job.timeout)
	defer cancel()
	result := map[string]any{"event": "result", "early": early}
	started := time.Now()
	var conn quic.Connection
	var err error
	if early { // streams are opened before the handshake completes: 0-RTT if accepted
		conn, err = quic.DialAddrEarlyContext(ctx, job.addr, tlsConf, job.config)
	} else {
		conn, err = quic.DialAddrContext(ctx, job.addr, tlsConf, job.config)
	}
	if err != nil {
		result["error"] = "dial: " + err.Error()
		emit(result)
		return false
	}
	result["handshake_ms"] = time.Since(started).Milliseconds()
	reports := make([]map[string]any, job.streams)
	var wg sync.WaitGroup
	for k := 0; k < job.streams; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			reports[k] = clientStream(ctx, conn, job, int64(k))
		}(k)
	}
	wg.Wait()
	state := conn.ConnectionState().TLS // blocks until the handshake is complete
	result["alpn"] = state.NegotiatedProtocol
	result["cipher"] = tls.CipherSuiteName(state.CipherSuite)
	result["resumed"] = state.DidResume
	result["used_0rtt"] = state.Used0RTT
	ok := true
	for _, r := range reports {
		if _, failed := r["error"]; failed {
			ok = false
		}
	}
	result["streams"] = reports
	if ok {
		_ = conn.CloseWithError(0, "done")
	} else {
		_ = conn.CloseWithError(1, "stream failed")
	}
	emit(result)
	return ok
}

func clientStream(ctx context.Context, conn quic.Connection, job clientJob, k int64) map[string]any {
	report := map[string]any{"seed": k}
	stream, err := conn.OpenStreamSync(ctx)
	if err != nil {
		report["error"] = "open: " + err.Error()
		return report
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = stream.SetDeadline(deadline)
	}
	report["id"] = int64(stream.StreamID())
	command := job.command
	upload := job.size
	if command == "send" {
		command = fmt.Sprintf("send %d", job.size)
		upload = 0
	}
	sent := newHashingCounter()
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(stream, command+"\n")
		if err == nil {
			src := io.TeeReader(&patternReader{size: upload, seed: k}, sent)
			_, err = io.CopyBuffer(stream, src, make([]byte, copyBuffer))
		}
		if err == nil {
			err = stream.Close()
		}
		writeErr <- err
	}()
	received := newHashingCounter()
	var reply strings.Builder
	sink := io.Writer(received)
	if job.command == "sha256" {
		sink = io.MultiWriter(received, &limitedBuilder{&reply, maxCommandLine * 2})
	}
	_, err = io.CopyBuffer(sink, stream, make([]byte, copyBuffer))
	if werr := <-writeErr; werr != nil {
		report["error"] = "write: " + werr.Error()
	} else if err != nil {
		report["error"] = "read: " + err.Error()
	}
	report["sent_len"] = sent.n
	report["sent_sha256"] = sent.hex()
	report["received_len"] = received.n
	report["received_sha256"] = received.hex()
	if job.command == "sha256" {
		report["reply"] = reply.String()
	}
	return report
}

// limitedBuilder keeps the first limit bytes written to it (the reply line).
type limitedBuilder struct {
	b     *strings.Builder
	limit int
}

func (l *limitedBuilder) Write(p []byte) (int, error) {
	if room := l.limit - l.b.Len(); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b.Write(p[:room])
	}
	return len(p), nil
}
