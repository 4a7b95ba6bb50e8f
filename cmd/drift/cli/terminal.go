package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/driftcluster/drift/agent/api"
)

// terminal connects the user's terminal to a job's stream until the job
// exits, and returns its status as an exitError. Ctrl-C and the other
// terminal signals go to the job.
func terminal(fc *api.FrameConn, stdin io.Reader, stdout, stderr io.Writer) error {
	defer fc.Close()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			fc.Write(api.FrameSignal, []byte{byte(s.(syscall.Signal))})
		}
	}()
	var id string
	started := false
	for {
		f, err := fc.Read()
		if err != nil {
			if id != "" {
				return fmt.Errorf("lost the connection to the agent; job %s keeps running: drift attach %s", id, id)
			}
			return fmt.Errorf("lost the connection to the agent: %w", err)
		}
		switch f.Type {
		case api.FrameInfo:
			var info api.JobInfo
			json.Unmarshal(f.Data, &info)
			id = info.ID
			if !started && stdin != nil {
				started = true
				go copyStdin(fc, stdin)
			}
		case api.FrameStdout:
			stdout.Write(f.Data)
		case api.FrameStderr:
			stderr.Write(f.Data)
		case api.FrameExit:
			var st api.ExitStatus
			json.Unmarshal(f.Data, &st)
			if st.Error != "" {
				fmt.Fprintf(stderr, "drift: job %s: %s\n", id, st.Error)
			}
			if st.Code != 0 {
				return exitError{st.Code}
			}
			return nil
		case api.FrameError:
			return errors.New(string(f.Data))
		}
	}
}

func copyStdin(fc *api.FrameConn, stdin io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdin.Read(buf)
		if n > 0 && fc.Write(api.FrameStdin, buf[:n]) != nil {
			return
		}
		if err != nil {
			fc.Write(api.FrameStdinEOF, nil)
			return
		}
	}
}
