package membership

import (
	"errors"
	"fmt"

	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/hashicorp/memberlist"
)

// Key rotation. memberlist's keyring holds several keys: it encrypts with
// the primary one and decrypts with any. A cluster moves to a new key
// without a gap in three steps, each done on every member before the
// next begins: InstallKey (every member can read the new key's packets),
// UseKey (every member writes with it), RemoveKey of the old one (a
// holder of the old key is no longer understood). These are the
// building blocks of drift rekey; the memberlist label stays the one the
// membership started with (Config.Label), so that it does not split the
// cluster while the keys change.

// ErrNotRunning reports a keyring change asked of a membership that is
// not running (it has no memberlist yet, or any more).
var ErrNotRunning = errors.New("membership is not running: try again in a moment")

func (m *Membership) keyring() (*memberlist.Keyring, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ml == nil || m.keys == nil {
		return nil, ErrNotRunning
	}
	return m.keys, nil
}

// InstallKey adds k to the keyring: this member decrypts packets sealed
// with it, and still seals its own with the primary key.
func (m *Membership) InstallKey(k clusterkey.Key) error {
	kr, err := m.keyring()
	if err != nil {
		return err
	}
	if err := kr.AddKey(k[:]); err != nil {
		return fmt.Errorf("membership: install key %s: %w", k.ID(), err)
	}
	return nil
}

// UseKey makes k, installed before, the key this member seals with.
func (m *Membership) UseKey(k clusterkey.Key) error {
	kr, err := m.keyring()
	if err != nil {
		return err
	}
	if err := kr.UseKey(k[:]); err != nil {
		return fmt.Errorf("membership: use key %s: %w (install it first)", k.ID(), err)
	}
	return nil
}

// RemoveKey drops k from the keyring; it must not be the primary key.
func (m *Membership) RemoveKey(k clusterkey.Key) error {
	kr, err := m.keyring()
	if err != nil {
		return err
	}
	if err := kr.RemoveKey(k[:]); err != nil {
		return fmt.Errorf("membership: remove key %s: %w", k.ID(), err)
	}
	return nil
}

// KeyIDs are the IDs of the keys in the keyring, the primary first.
func (m *Membership) KeyIDs() []string {
	kr, err := m.keyring()
	if err != nil {
		return nil
	}
	var ids []string
	for _, b := range kr.GetKeys() {
		var k clusterkey.Key
		copy(k[:], b)
		ids = append(ids, k.ID())
	}
	return ids
}
