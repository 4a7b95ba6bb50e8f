package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// uiDefaultAddr is where drift ui listens unless --listen says otherwise.
const uiDefaultAddr = "127.0.0.1:8470"

// runUI serves the web dashboard (ui_server.go, the page in ui/): the
// nodes with their load and memory over the last hour, the jobs on
// each, migrations as they happen, netboot, storage and the event feed,
// live over one server-sent event stream; a job dragged onto a node
// moves there. The browser talks only to drift ui, which holds the key.
func runUI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("ui", "[--listen ADDR]", stderr)
	listen := fs.String("listen", uiDefaultAddr, "serve the dashboard at `ADDR`; any address but loopback needs the token printed at start")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("want no arguments: %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	token := ""
	if !isLoopback(ln.Addr()) {
		if token, err = newUIToken(); err != nil {
			ln.Close()
			return err
		}
	}
	where := cf.cluster
	if where == "" {
		where = "this node"
	}
	s := newUIServer(c, where, token)
	fmt.Fprintf(stdout, "drift ui: open %s\n", uiURL(ln.Addr(), token))
	if token != "" {
		fmt.Fprintln(stdout, "drift ui: the token in that address is the only way in; keep it to yourself")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); s.run(ctx) }()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()
	err = srv.Serve(ln)
	cancel()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// isLoopback says whether addr is on the loopback interface only.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// newUIToken returns the secret a browser must show when drift ui
// listens beyond loopback.
func newUIToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// uiURL is the address to open: the listening address (this host's
// name when it listens on every address) and the token, if any.
func uiURL(addr net.Addr, token string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	u := "http://" + net.JoinHostPort(host, port) + "/"
	if token != "" {
		u += "?token=" + token
	}
	return u
}
