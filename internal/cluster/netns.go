package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// Netns is a network namespace the harness created, joined to the host by
// a veth pair on a /30 of its own (10.231.x.y): a node started inside it
// (Wrap) reaches the host only through that pair, so the harness can cut
// exactly its traffic with iptables DROP rules (no reset: packets vanish,
// as in a real partition). Linux only, and root.
type Netns struct {
	Name   string
	HostIf string // the host end of the veth pair
	HostIP string // the host's address on the pair
	NSIP   string // the namespace's address

	mu    sync.Mutex
	rules [][]string // iptables rules in place (for Heal and Close)
}

func ipcmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cluster: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NewNetns creates a namespace and its veth pair. Close removes both.
func NewNetns() (*Netns, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("cluster: the ip command is missing (apt-get install iproute2)")
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(r[:])
	sub := binary.BigEndian.Uint16(r[:2]) &^ 3 // a /30 inside 10.231.0.0/16
	n := &Netns{
		Name:   "hearth-" + id,
		HostIf: "hh" + id,
		HostIP: fmt.Sprintf("10.231.%d.%d", sub>>8, sub&0xff+1),
		NSIP:   fmt.Sprintf("10.231.%d.%d", sub>>8, sub&0xff+2),
	}
	nsIf := "hn" + id
	steps := [][]string{
		{"netns", "add", n.Name},
		{"link", "add", n.HostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", n.Name},
		{"addr", "add", n.HostIP + "/30", "dev", n.HostIf},
		{"link", "set", n.HostIf, "up"},
		{"-n", n.Name, "addr", "add", n.NSIP + "/30", "dev", nsIf},
		{"-n", n.Name, "link", "set", nsIf, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ipcmd(s...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// Wrap is the command prefix that runs a program inside the namespace.
func (n *Netns) Wrap() []string { return []string{"ip", "netns", "exec", n.Name} }

// Cut drops, without a reset, every packet between the namespace and the
// host's port (both directions).
func (n *Netns) Cut(port int) error {
	p := strconv.Itoa(port)
	rules := [][]string{
		{"INPUT", "-i", n.HostIf, "-p", "tcp", "--dport", p, "-j", "DROP"},
		{"OUTPUT", "-o", n.HostIf, "-p", "tcp", "--sport", p, "-j", "DROP"},
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range rules {
		if out, err := exec.Command("iptables", append([]string{"-I"}, r...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("cluster: iptables -I %s: %v: %s", strings.Join(r, " "), err, out)
		}
		n.rules = append(n.rules, r)
	}
	return nil
}

// Heal removes the rules Cut added.
func (n *Netns) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var first error
	for _, r := range n.rules {
		if out, err := exec.Command("iptables", append([]string{"-D"}, r...)...).CombinedOutput(); err != nil && first == nil {
			first = fmt.Errorf("cluster: iptables -D %s: %v: %s", strings.Join(r, " "), err, out)
		}
	}
	n.rules = nil
	return first
}

// Close heals, and deletes the veth pair and the namespace.
func (n *Netns) Close() error {
	err := n.Heal()
	_ = ipcmd("link", "del", n.HostIf) // deletes the peer too
	if e := ipcmd("netns", "del", n.Name); e != nil && err == nil {
		err = e
	}
	return err
}

// Forwarder relays TCP connections from a listening address to a target:
// the namespace reaches the host's Postgres (on loopback) through it.
type Forwarder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Forward listens on listen (host:port, port 0 for any) and relays to target.
func Forward(listen, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the address the forwarder listens on.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Port is the port the forwarder listens on.
func (f *Forwarder) Port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *Forwarder) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.closed {
			return false
		}
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
	return true
}

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				return
			}
			if !f.track(c, true) || !f.track(up, true) {
				c.Close()
				up.Close()
				return
			}
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(up, c)
			go pipe(c, up)
			<-done
			<-done
			c.Close()
			up.Close()
			f.track(c, false)
			f.track(up, false)
		}()
	}
}

// Close stops listening and cuts every relayed connection.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	err := f.ln.Close()
	f.wg.Wait()
	return err
}
