package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltFile is the embedded store's file name inside its directory.
const BoltFile = "ferry.db"

// boltLockWait bounds the wait for the file's lock: another ferry holding
// it is an error to report, not to wait for.
const boltLockWait = 2 * time.Second

// sweepEvery is how often, at most, the embedded store drops expired
// counters (in the transaction of a flush).
const sweepEvery = time.Hour

var usageBucket = []byte("usage")

// Bolt is the embedded backend: one bbolt file, one bucket of counters,
// each value its total and its expiry (16 bytes, big-endian). One process
// holds the file at a time (bbolt locks it).
type Bolt struct {
	db        *bolt.DB
	mu        sync.Mutex
	lastSweep time.Time
}

var _ Backend = (*Bolt)(nil)

// OpenBolt opens (creating it and dir if need be) the store file in dir.
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	path := filepath.Join(dir, BoltFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltLockWait})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: another process holds it", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	b := &Bolt{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(usageBucket)
		if err != nil {
			return err
		}
		return sweep(bk, time.Now())
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare %s: %w", path, err)
	}
	b.lastSweep = time.Now()
	return b, nil
}

// Add implements Backend: one transaction for the batch.
func (b *Bolt) Add(_ context.Context, ds []Delta) ([]int64, error) {
	out := make([]int64, len(ds))
	now := time.Now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(usageBucket)
		for i, d := range ds {
			k := []byte(encode(d.Key))
			total, _ := value(bk.Get(k), now)
			total += d.N
			if err := bk.Put(k, record(total, d.Expires)); err != nil {
				return err
			}
			out[i] = total
		}
		if b.sweepDue(now) {
			return sweep(bk, now)
		}
		return nil
	})
	return out, err
}

func (b *Bolt) sweepDue(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastSweep) < sweepEvery {
		return false
	}
	b.lastSweep = now
	return true
}

// Get implements Backend.
func (b *Bolt) Get(_ context.Context, keys []Key) ([]int64, error) {
	out := make([]int64, len(keys))
	now := time.Now()
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(usageBucket)
		for i, k := range keys {
			out[i], _ = value(bk.Get([]byte(encode(k))), now)
		}
		return nil
	})
	return out, err
}

// List implements Backend.
func (b *Bolt) List(_ context.Context, prefix string, limit int) ([]Entry, error) {
	var out []Entry
	now := time.Now()
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(usageBucket).ForEach(func(k, v []byte) error {
			key, ok := decode(string(k))
			total, live := value(v, now)
			if ok && live && strings.HasPrefix(key.Scope, prefix) && len(out) < limit {
				out = append(out, Entry{Key: key, Total: total})
			}
			return nil
		})
	})
	return out, err
}

// Delete implements Backend.
func (b *Bolt) Delete(_ context.Context, prefix, subject string) (int, error) {
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = deleteWhere(tx.Bucket(usageBucket), func(k, _ []byte) bool {
			key, ok := decode(string(k))
			return ok && key.Subject == subject && strings.HasPrefix(key.Scope, prefix)
		})
		return err
	})
	return n, err
}

// Shared implements Backend: the file is this process's alone.
func (b *Bolt) Shared() bool { return false }

// Close implements Backend.
func (b *Bolt) Close() error { return b.db.Close() }

// record encodes a counter's value.
func record(total int64, expires time.Time) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(total))
	binary.BigEndian.PutUint64(v[8:], uint64(expires.Unix()))
	return v
}

// value decodes a counter's value; an expired or malformed one is 0 and
// not live.
func value(v []byte, now time.Time) (total int64, live bool) {
	if len(v) != 16 {
		return 0, false
	}
	if now.Unix() >= int64(binary.BigEndian.Uint64(v[8:])) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

// sweep deletes the expired and malformed counters of bk.
func sweep(bk *bolt.Bucket, now time.Time) error {
	_, err := deleteWhere(bk, func(_, v []byte) bool {
		_, live := value(v, now)
		return !live
	})
	return err
}

// deleteWhere deletes the entries of bk that doomed picks (after the
// walk: bbolt forbids deleting while ForEach runs) and counts them.
func deleteWhere(bk *bolt.Bucket, doomed func(k, v []byte) bool) (int, error) {
	var keys [][]byte
	err := bk.ForEach(func(k, v []byte) error {
		if doomed(k, v) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range keys {
		if err == nil {
			err = bk.Delete(k)
		}
	}
	return len(keys), err
}
