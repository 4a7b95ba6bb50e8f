package labport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// shutdownWrite bounds the broker's last writes to its clients.
const shutdownWrite = 5 * time.Second

// Broker shares one node's lab port among any number of clients (Run,
// Exec), on the host. QEMU's end of the port takes one connection at a
// time; the broker holds it and relays each client's streams over it,
// giving each stream an ID of its own on the port.
type Broker struct {
	// Dial connects to the port (QEMU's chardev socket). Run calls it at
	// the start and again whenever the connection ends; when it fails,
	// Run returns its error. Required.
	Dial   func(ctx context.Context) (io.ReadWriteCloser, error)
	Logger *slog.Logger // nil: slog.Default()
}

// Run accepts clients on ln and relays their streams until ctx ends or
// Dial fails. Streams open when the port's connection ends are lost: their
// clients get an exit frame that says so. Clients that connect before the
// port does wait for it. Run closes ln.
func (b *Broker) Run(ctx context.Context, ln net.Listener) error {
	bs := &brokerState{
		log:     b.logger(),
		routes:  map[uint64]route{},
		clients: map[*brokerClient]struct{}{},
		port:    newPortQueue(),
		next:    firstPortID(),
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		bs.accept(ctx, ln, &wg)
	}()

	for {
		port, err := b.Dial(ctx)
		if err != nil {
			bs.shutdown(fmt.Sprintf("the node's lab port is gone: %v", err))
			ln.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("connect to the lab port: %w", err)
		}
		bs.log.Info("lab port connected")
		err = bs.serve(ctx, port)
		if ctx.Err() != nil {
			bs.shutdown("the lab port's broker is stopping")
			return ctx.Err()
		}
		bs.log.Info("lab port connection ended", "err", err)
	}
}

func (b *Broker) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.Default()
}

// firstPortID is where a broker starts numbering streams on the port: at
// random, so that output the agent was still writing for the streams of a
// broker that died cannot be taken for one of its successor's.
func firstPortID() uint64 {
	var b [4]byte
	rand.Read(b[:])
	return uint64(binary.BigEndian.Uint32(b[:])) << 16
}

// route is where a stream's frames from the port go: a client, under the
// client's own ID for the stream.
type route struct {
	c  *brokerClient
	id uint64
}

type brokerState struct {
	log *slog.Logger

	mu       sync.Mutex
	routes   map[uint64]route // by port ID
	clients  map[*brokerClient]struct{}
	next     uint64 // the last port ID given out
	port     *queue // frames for the port's current (or next) connection
	instance string // the guest server's, from its hello; "" before one
	closed   bool
}

// newPortQueue is the queue for a port connection, starting with a hello.
func newPortQueue() *queue {
	q := newQueue(maxPortQueue)
	q.push(0, helloLine(frame{T: tHello, V: Version}))
	return q
}

// serve relays between the port and the clients until the port's
// connection ends; the streams open then are lost.
func (bs *brokerState) serve(ctx context.Context, port io.ReadWriteCloser) error {
	bs.mu.Lock()
	q := bs.port
	bs.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { port.Close() })
	defer stop()
	wdone := make(chan error, 1)
	go func() {
		err := q.run(port)
		port.Close() // a failed write ends the connection: the reader sees it
		wdone <- err
	}()
	fr := newFrameReader(port)
	var err error
	for {
		var f frame
		f, err = fr.next()
		if errors.Is(err, errMalformed) {
			bs.log.Debug("lab port: dropped a line from the guest", "err", err)
			continue
		}
		if err != nil {
			break
		}
		bs.fromGuest(f)
	}
	port.Close()
	bs.mu.Lock()
	bs.port = newPortQueue() // for the next connection; what q held is for lost streams
	bs.loseAll("the connection to the node's VM ended (did it stop or reboot? drift-lab status)")
	bs.mu.Unlock()
	q.close()
	<-wdone
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// fromGuest routes a frame from the port to its client.
func (bs *brokerState) fromGuest(f frame) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if f.T == tHello {
		if bs.instance != "" && f.Instance != bs.instance {
			bs.log.Warn("lab port: the node's server restarted", "was", bs.instance, "now", f.Instance)
			bs.loseAll("the node's lab port server restarted (did driftd restart?)")
		}
		bs.instance = f.Instance
		return
	}
	r, ok := bs.routes[f.ID]
	if !ok {
		if f.T != tExit && f.ID != 0 { // a stream no client wants any more
			bs.port.push(f.ID, encode(frame{T: tClose, ID: f.ID}))
		}
		return
	}
	if f.T == tExit {
		delete(bs.routes, f.ID)
		delete(r.c.ids, r.id)
	}
	f.ID = r.id
	if !r.c.out.push(0, encode(f)) {
		bs.log.Warn("lab port: a client's queue overflowed; dropping it", "client", r.c.conn.RemoteAddr())
		r.c.conn.Close()
	}
}

// loseAll ends every open stream with an exit frame carrying why. The
// caller holds bs.mu.
func (bs *brokerState) loseAll(why string) {
	for pid, r := range bs.routes {
		r.c.out.push(0, encode(frame{T: tExit, ID: r.id, Err: why, Lost: true}))
		delete(r.c.ids, r.id)
		delete(bs.routes, pid)
	}
}

// shutdown loses every stream and disconnects every client, for good.
func (bs *brokerState) shutdown(why string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.closed = true
	bs.loseAll(why)
	for c := range bs.clients {
		// Each client gets its exit frames, then the connection closes;
		// one that does not read them does not hold the broker up.
		c.conn.SetWriteDeadline(time.Now().Add(shutdownWrite))
		c.out.closeWhenEmpty()
	}
}

// accept serves each client that connects on ln in its own goroutine,
// counted in wg, until ln fails.
func (bs *brokerState) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				bs.log.Debug("lab port: accept", "err", err)
			}
			return
		}
		c := &brokerClient{conn: conn, out: newQueue(maxClientQueue), ids: map[uint64]uint64{}}
		bs.mu.Lock()
		if bs.closed {
			bs.mu.Unlock()
			conn.Close()
			continue
		}
		bs.clients[c] = struct{}{}
		bs.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			bs.serveClient(c)
		}()
	}
}

// brokerClient is one connection from a client.
type brokerClient struct {
	conn net.Conn
	out  *queue            // frames for the client
	ids  map[uint64]uint64 // the client's stream IDs → port IDs; guarded by brokerState.mu
}

// serveClient relays one client's frames to the port until the client
// disconnects (or the broker's writer to it ends), then hangs up the
// streams it left open.
func (bs *brokerState) serveClient(c *brokerClient) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.out.run(c.conn)
		c.conn.Close() // ends the reader below too
	}()
	fr := newFrameReader(c.conn)
	for {
		f, err := fr.next()
		if errors.Is(err, errMalformed) {
			bs.log.Debug("lab port: dropped a line from a client", "err", err)
			continue
		}
		if err != nil {
			break
		}
		if !bs.fromClient(c, f) {
			bs.log.Warn("lab port: the port's queue overflowed; dropping a client")
			break
		}
	}
	bs.mu.Lock()
	for cid, pid := range c.ids {
		bs.port.push(pid, encode(frame{T: tClose, ID: pid}))
		delete(bs.routes, pid)
		delete(c.ids, cid)
	}
	delete(bs.clients, c)
	bs.mu.Unlock()
	c.out.close()
	wg.Wait()
}

// fromClient sends a client's frame to the port under the stream's port
// ID; it reports false if the port's queue overflowed.
func (bs *brokerState) fromClient(c *brokerClient, f frame) bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if f.T == tOpen {
		if _, dup := c.ids[f.ID]; dup || bs.closed {
			return true
		}
		bs.next++
		c.ids[f.ID] = bs.next
		bs.routes[bs.next] = route{c: c, id: f.ID}
		f.ID = bs.next
		return bs.port.push(f.ID, encode(f))
	}
	pid, ok := c.ids[f.ID]
	if !ok {
		return true
	}
	if f.T == tClose {
		delete(c.ids, f.ID)
		delete(bs.routes, pid)
	}
	f.ID = pid
	return bs.port.push(pid, encode(f))
}
