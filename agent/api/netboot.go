package api

import (
	"context"
	"net/http"
	"time"
)

// Netboot is GET /v1/netboot: the head's network-boot service and the
// machines that booted from it. Only a head serves it.
type Netboot struct {
	Mode      string           `json:"mode"`            // "server" (DHCP with addresses), "proxy" (proxyDHCP) or "off"
	Interface string           `json:"interface"`       // where it serves
	Addr      string           `json:"addr"`            // the head's address there
	ScriptURL string           `json:"script_url"`      // http://HEAD/boot.ipxe
	Medium    string           `json:"medium"`          // the device the kernel and initramfs come from
	Version   string           `json:"version"`         // the drift version on that medium
	TFTPDir   string           `json:"tftp_dir"`        // where the iPXE binaries come from; "": none (only iPXE clients boot)
	Error     string           `json:"error,omitempty"` // why it does not serve, if it does not
	TFTPBytes int64            `json:"tftp_bytes"`      // bytes served over TFTP since the agent started
	HTTPBytes int64            `json:"http_bytes"`      // bytes served over HTTP
	Machines  []NetbootMachine `json:"machines"`        // most recent first
}

// NetbootMachine is one machine that network-booted from the head.
type NetbootMachine struct {
	MAC   string    `json:"mac"`
	Arch  string    `json:"arch"` // "bios", "uefi-x64"...
	Addr  string    `json:"addr,omitempty"`
	Stage string    `json:"stage"` // dhcp, ipxe-binary, boot-script, kernel, initramfs, joined
	Node  string    `json:"node"`  // the node name it takes: drift-<last 3 MAC bytes>
	At    time.Time `json:"at"`    // when it reached Stage
}

// NetbootRoutes is GET /v1/netboot for the Server's Routes: the head's
// network boot as status reports it; status nil (not a head): 404 with
// an explanation.
func NetbootRoutes(status func() Netboot) map[string]http.Handler {
	return map[string]http.Handler{
		"GET /v1/netboot": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if status == nil {
				http.Error(w, "this node is not a head: network boot runs on the head (drift.role=head)", http.StatusNotFound)
				return
			}
			WriteJSON(w, status())
		}),
	}
}

// Netboot describes the head's network boot.
func (c *Client) Netboot(ctx context.Context) (Netboot, error) {
	var out Netboot
	return out, c.get(ctx, "/v1/netboot", &out)
}
