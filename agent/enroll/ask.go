package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// AskConfig configures Ask.
type AskConfig struct {
	Head        string // the head's enrolment address, IP:PORT (drift.enroll_head)
	Fingerprint string // SHA-256 of the head's certificate, hex (drift.enroll_fp)
	MAC         string // the MAC this machine booted with
	Node        string // its node name
	Version     string // its drift version
	// OnState is called when the head's answer changes (and on each
	// failure to reach it), with what the console should say; nil: none.
	OnState  func(state, message string)
	Interval time.Duration // between requests while pending or refused; 0: 3s
	Logger   *slog.Logger  // nil: slog.Default()
}

// Ask asks the head for the cluster key until it is admitted or ctx ends:
// AskCluster's key.
func Ask(ctx context.Context, cfg AskConfig) (clusterkey.Key, error) {
	c, err := AskCluster(ctx, cfg)
	return c.Key, err
}

// AskCluster asks the head for the cluster's key and ID until it is
// admitted or ctx ends.
// It makes this machine's key pair first; a refused machine keeps asking
// (the operator may change their mind with drift admit). An ErrWrongHead
// is returned at once: nothing this machine can do makes that head right.
func AskCluster(ctx context.Context, cfg AskConfig) (clusterkey.Cluster, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	every := cfg.Interval
	if every == 0 {
		every = 3 * time.Second
	}
	onState := cfg.OnState
	if onState == nil {
		onState = func(string, string) {}
	}
	id, err := NewIdentity(cfg.Node)
	if err != nil {
		return clusterkey.Cluster{}, err
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			Certificates:          []tls.Certificate{id},
			InsecureSkipVerify:    true, // no CA: the certificate is pinned by its fingerprint instead
			VerifyPeerCertificate: pinned(strings.ToLower(cfg.Fingerprint)),
			MinVersion:            tls.VersionTLS13,
		},
		TLSHandshakeTimeout: 10 * time.Second,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	body, _ := json.Marshal(Request{MAC: cfg.MAC, Node: cfg.Node, Version: cfg.Version})
	last := ""
	for {
		resp, err := ask(ctx, hc, "https://"+cfg.Head+Path, body)
		switch {
		case ctx.Err() != nil:
			return clusterkey.Cluster{}, ctx.Err()
		case errors.Is(err, ErrWrongHead):
			onState("error", err.Error())
			return clusterkey.Cluster{}, err
		case err != nil:
			log.Warn("enroll: ask the head", "head", cfg.Head, "err", err)
			if last != "unreachable" {
				onState("unreachable", fmt.Sprintf("cannot reach the head at %s (%v); asking again", cfg.Head, err))
			}
			last = "unreachable"
		case resp.State == api.EnrollAdmitted:
			k, err := clusterkey.Parse([]byte(resp.Key))
			if err != nil {
				return clusterkey.Cluster{}, fmt.Errorf("enroll: the head's key: %w", err)
			}
			c := clusterkey.Of(k)
			if resp.Cluster != "" {
				c.ID = resp.Cluster
			}
			onState(resp.State, resp.Message)
			return c, nil
		default:
			if resp.State != last {
				onState(resp.State, resp.Message)
			}
			last = resp.State
		}
		select {
		case <-ctx.Done():
			return clusterkey.Cluster{}, ctx.Err()
		case <-time.After(every):
		}
	}
}

func ask(ctx context.Context, hc *http.Client, url string, body []byte) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, ErrWrongHead) {
			return Response{}, ErrWrongHead
		}
		return Response{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return Response{}, fmt.Errorf("head answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var r Response
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&r); err != nil {
		return Response{}, fmt.Errorf("head's answer: %w", err)
	}
	return r, nil
}
