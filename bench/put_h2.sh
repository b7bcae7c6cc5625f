#!/bin/bash
# PUT of 1 GiB over h2c vs HTTP/1.1 to one zcopy server (1 worker, epoll), tmpfs
# target under /dev/shm; server CPU-s from /proc/PID/stat (utime+stime), per run.
set -e
BIN=${BIN:-target/release/zcopy}
ROOT=/dev/shm/h2body-bench; SRC=/dev/shm/h2body-src.bin
rm -rf $ROOT; mkdir -p $ROOT
[ -f $SRC ] || head -c 1G /dev/urandom > $SRC
PORT=18555
taskset -c 0 $BIN serve $ROOT --listen 127.0.0.1:$PORT --upload --workers 1 --io epoll >/dev/null 2>&1 &
PID=$!; sleep 1
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
TCK=$(getconf CLK_TCK)
for i in 1 2 3; do
 for proto in --http1.1 --http2-prior-knowledge; do
  c0=$(cpu)
  out=$(taskset -c 1 curl -s -o /dev/null -w "%{http_code} %{speed_upload} %{time_total}" $proto -T $SRC http://127.0.0.1:$PORT/up.bin)
  c1=$(cpu)
  set -- $out
  echo "$proto status=$1 MB/s=$(echo "$2/1000000" | bc -l | cut -c1-7) s=$3 server_cpu_s_per_GiB=$(echo "($c1-$c0)/$TCK" | bc -l | cut -c1-5)"
  rm -f $ROOT/up.bin; sleep 1
 done
 c0=$(cpu); t0=$(date +%s.%N)
 taskset -c 1 nghttp -s -d $SRC -H ':method: PUT' http://127.0.0.1:$PORT/up.bin | grep -q " 201 " && st=201 || st=fail
 t1=$(date +%s.%N); c1=$(cpu)
 echo "nghttp-h2c status=$st MB/s=$(echo "1073.741824/($t1-$t0)" | bc -l | cut -c1-7) s=$(echo "$t1-$t0" | bc -l | cut -c1-6) server_cpu_s_per_GiB=$(echo "($c1-$c0)/$TCK" | bc -l | cut -c1-5)"
 rm -f $ROOT/up.bin; sleep 1
done
kill $PID
