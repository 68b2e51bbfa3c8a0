// The in-pod check of `hack/cluster.sh selftest`: resolves the API server's Service name through
// the cluster DNS, then calls the API through that Service (kube-proxy) with the pod's
// service-account token, trusting the kube-root-ca.crt the pod was given. A static Go program in
// an image FROM scratch, so the check needs no base image.
//
//	probe              run the check once, print what it found, exit 0 if everything worked
//	probe ARG...       also resolve these names / GET these http:// URLs (another pod's Service)
//	probe serve ADDR   answer "probe ok" to HTTP requests on ADDR (the other pod)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "probe ok\n") })
		fmt.Println("serving on", os.Args[2])
		if err := http.ListenAndServe(os.Args[2], nil); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	}
	failed := false
	var names, urls []string
	for _, arg := range os.Args[1:] {
		if strings.HasPrefix(arg, "http://") {
			urls = append(urls, arg)
		} else {
			names = append(names, arg)
		}
	}
	fail := func(format string, args ...any) {
		fmt.Printf("FAIL "+format+"\n", args...)
		failed = true
	}
	names = append([]string{"kubernetes.default.svc.cluster.local", "kubernetes.default"}, names...)
	for _, name := range names {
		addrs, err := net.LookupHost(name)
		if err != nil {
			fail("resolve %s: %v", name, err)
			continue
		}
		fmt.Printf("ok   resolve %s -> %s\n", name, strings.Join(addrs, ","))
	}

	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		fail("read token: %v", err)
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		fail("read ca.crt: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	req, _ := http.NewRequest("GET", "https://kubernetes.default.svc/api", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		fail("GET https://kubernetes.default.svc/api: %v", err)
	} else {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fail("GET https://kubernetes.default.svc/api: %s %s", resp.Status, body)
		} else {
			fmt.Printf("ok   GET https://kubernetes.default.svc/api: %s %s\n", resp.Status, strings.Join(strings.Fields(string(body)), " "))
		}
	}
	for _, url := range urls {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			fail("GET %s: %v", url, err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fail("GET %s: %s", url, resp.Status)
		} else {
			fmt.Printf("ok   GET %s: %s %s\n", url, resp.Status, strings.TrimSpace(string(body)))
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Println("PROBE OK")
}
