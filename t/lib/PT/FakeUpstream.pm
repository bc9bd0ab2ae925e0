package PT::FakeUpstream;

# A small fake upstream registry for what a real one cannot be made to do:
# wrong bytes, wrong digests, redirects, stalls, bodies that pause until the
# test lets them go on. Only for those cases: everything else is tested
# against the real registry (PT::Registry).
#
#   my $fake = PT::FakeUpstream->new(
#       blob_dirs => [ "$layout/blobs" ],          # <dir>/sha256/<hex> files
#       tags      => { 'library/hello:1.0' => 'sha256:...' },
#       blobs     => { 'sha512:...' => $bytes },   # extra in-memory blobs
#       hook      => sub {
#           my ($req, $fake) = @_;
#           return undef;                  # undef: the default answer
#           return [ 307, [ Location => $url ], '' ];
#           return [ 200, [ 'Content-Type' => 'x' ], { file => $f, corrupt => 1 } ];
#           return { stall => 1 };         # never answer
#       },
#   )->start;
#   $fake->url;            # http://127.0.0.1:PORT
#   $fake->set_flag('mode', 'stall');   # hooks read $fake->flag('mode')
#   my @r = $fake->requests;   # ({ method, uri, path, query, headers }, ...)
#   $fake->reset_requests;
#   $fake->stop;           # also done in DESTROY and at exit
#
# The server (a PT::Server) is a process forked by start() that forks again
# for each connection; every connection carries one request and is closed
# after the answer (Connection: close). A request is logged (requests.log in
# the instance's directory, one JSON object a line) as soon as its head has
# been read, before any answer: a client that got an answer finds its
# request in requests(). Hooks run in the connection's process: they share
# nothing with the test but the flags (files in the instance's directory).
#
# Answers: [ STATUS, HEADERS (array of pairs or hash), BODY ] where BODY is
#   - a string;
#   - { file => PATH, offset => N, length => N,
#       corrupt => 1        flip one byte in the middle (same length),
#       truncate => N       send N bytes of the body, then close,
#       pause_at => N       after N bytes wait until flag wait_flag exists
#       wait_flag => NAME   (no wait_flag: wait forever) }
#   - a code reference, called with the socket after the head was sent
#     (no Content-Length is added for it).
# Content-Length (the full length, even with truncate) and
# Connection: close are added unless the headers have them. A HEAD request
# gets the head only. { stall => 1 } accepts the request and never answers
# (until the flag named by release => NAME exists, then closes).

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);

use parent 'PT::Server';
use PT::Util qw(match_requests);

my $JSON = JSON::PP->new->utf8->canonical;

our %MT = (
    oci_manifest => 'application/vnd.oci.image.manifest.v1+json',
    oci_index    => 'application/vnd.oci.image.index.v1+json',
);


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(blob_dirs tags blobs hook dir);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::FakeUpstream->new: unknown option(s) @bad" if @bad;

    my $self = bless {
        dir => $opt{dir} || tempdir('pt-fake-XXXXXXXX', TMPDIR => 1,
                                    CLEANUP => !$ENV{PT_KEEP}),
        blob_dirs => $opt{blob_dirs} || [],
        tags => $opt{tags} || {},
        blobs => $opt{blobs} || {},
        hook => $opt{hook},
        pid => undef,
        seen => 0,
    }, $class;

    return $self->_track;
}


sub name { 'fake upstream' }


# flags: small files shared with the server's processes

sub _flag_file {
    my ($self, $name) = @_;
    croak "bad flag name '$name'" unless $name =~ /^[\w.-]+$/;
    return "$self->{dir}/flag.$name";
}

sub set_flag {
    my ($self, $name, $value) = @_;
    my $f = $self->_flag_file($name);
    open my $fh, '>', "$f.tmp" or die "$f: $!";
    print $fh $value // 1;
    close $fh;
    rename "$f.tmp", $f or die "rename $f: $!";
    return $self;
}

sub clear_flag {
    my ($self, $name) = @_;
    unlink $self->_flag_file($name);
    return $self;
}

sub flag {
    my ($self, $name) = @_;
    open my $fh, '<', $self->_flag_file($name) or return undef;
    local $/;
    my $v = <$fh>;
    return $v // '';
}


# requests whose method is $method (undef: any) and path matches $re
sub requests_matching {
    my ($self, $method, $re) = @_;
    return match_requests('path', $method, $re, $self->requests);
}


# in a connection's process

sub _serve {
    my ($self, $c) = @_;

    $SIG{TERM} = sub { POSIX::_exit(0) };
    binmode $c;

    local $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 30;
    my $hd = $self->_read_head($c);
    alarm 0;

    my $req = { method => $hd->{method}, uri => $hd->{target},
                path => $hd->{path}, query => $hd->{query},
                headers => $hd->{headers}, time => time, pid => $$ };

    if (open my $log, '>>', $self->log_file) {
        flock($log, LOCK_EX);
        print $log $JSON->encode($req), "\n";
        close $log;
    }

    my $res;
    $res = $self->{hook}->($req, $self) if $self->{hook};
    $res //= $self->default_answer($req);

    if (ref $res eq 'HASH' && $res->{stall}) {
        my $server = getppid();
        while (1) {
            POSIX::_exit(0) if getppid() != $server;
            last if $res->{release} && defined $self->flag($res->{release});
            sleep 0.05;
        }
        close $c;
        return;
    }

    $self->_respond($c, $req, @$res);
    close $c;
}


sub _respond {
    my ($self, $c, $req, $status, $headers, $body) = @_;

    my @h = ref $headers eq 'HASH' ? %$headers : @{ $headers || [] };
    my %have = map { lc $_ => 1 } @h[ grep { !($_ % 2) } 0 .. $#h ];

    my ($file, $fo, $len);
    if (ref $body eq 'HASH') {
        $fo = $body;
        $file = $fo->{file};
        my $size = -s $file // die "no file $file";
        $fo->{offset} //= 0;
        $len = $fo->{length} // $size - $fo->{offset};
    } elsif (!ref $body) {
        $body //= '';
        $len = length $body;
    }

    push @h, 'Content-Length' => $len
        if defined $len && !$have{'content-length'};
    push @h, 'Connection' => 'close' unless $have{connection};

    my $reason = { 200 => 'OK', 206 => 'Partial Content', 301 => 'Moved',
                   302 => 'Found', 303 => 'See Other',
                   307 => 'Temporary Redirect', 404 => 'Not Found',
                   500 => 'Internal Server Error' }->{$status} // 'Status';

    my $out = "HTTP/1.1 $status $reason\r\n";
    for (my $i = 0; $i < @h; $i += 2) {
        $out .= "$h[$i]: $h[$i + 1]\r\n";
    }
    $out .= "\r\n";

    _write($c, $out) or return;
    return if $req->{method} eq 'HEAD';

    if (ref $body eq 'CODE') {
        $body->($c, $self);
    } elsif ($file) {
        $self->_send_file($c, $fo, $len);
    } else {
        _write($c, $body);
    }
}


sub _write {
    my ($c, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($c, $data, length($data) - $off, $off);
        return 0 unless defined $n;
        $off += $n;
    }
    return 1;
}


sub _send_file {
    my ($self, $c, $fo, $len) = @_;

    open my $fh, '<:raw', $fo->{file} or die "$fo->{file}: $!";
    sysseek($fh, $fo->{offset}, 0);

    my $limit = defined $fo->{truncate} ? $fo->{truncate} : $len;
    my $flip = $fo->{corrupt} ? int($len / 2) : -1;
    my $paused = 0;
    my $sent = 0;
    my $server = getppid();

    while ($sent < $limit) {
        my $want = $limit - $sent;
        $want = 1024 * 1024 if $want > 1024 * 1024;

        if (defined $fo->{pause_at} && !$paused) {
            if ($sent >= $fo->{pause_at}) {
                # wait for the test (or forever)
                while (!($fo->{wait_flag}
                         && defined $self->flag($fo->{wait_flag})))
                {
                    POSIX::_exit(0) if getppid() != $server;
                    sleep 0.02;
                }
                $paused = 1;
            } elsif ($sent + $want > $fo->{pause_at}) {
                $want = $fo->{pause_at} - $sent;
            }
        }

        my $n = sysread($fh, my $buf, $want);
        die "read $fo->{file}: $!" unless defined $n;
        last if $n == 0;

        if ($flip >= $sent && $flip < $sent + $n) {
            my $i = $flip - $sent;
            substr($buf, $i, 1) = chr(ord(substr($buf, $i, 1)) ^ 0xff);
        }

        _write($c, $buf) or return;
        $sent += $n;
    }
    close $fh;
}


# the answer of a registry serving blob_dirs, tags and blobs

sub default_answer {
    my ($self, $req) = @_;

    my $m = $req->{method};
    my $p = $req->{path};
    my @api = ('Docker-Distribution-API-Version' => 'registry/2.0');

    return [ 405, [ @api ], '' ] unless $m eq 'GET' || $m eq 'HEAD';

    return [ 200, [ @api, 'Content-Type' => 'application/json' ], '{}' ]
        if $p eq '/v2/';

    if ($p =~ m{^/v2/(.+)/manifests/([^/]+)$}) {
        my ($name, $ref) = ($1, $2);
        my $digest = $ref =~ /:/ ? $ref : $self->{tags}{"$name:$ref"};
        my $bytes = defined $digest ? $self->content($digest) : undef;
        return error(404, 'MANIFEST_UNKNOWN') unless defined $bytes;
        my $type = eval { $JSON->decode($bytes)->{mediaType} }
            || $MT{oci_manifest};
        return [ 200, [ @api, 'Content-Type' => $type,
                        'Docker-Content-Digest' => $digest ], $bytes ];
    }

    if ($p =~ m{^/v2/(.+)/blobs/([^/]+)$}) {
        my $digest = $2;
        my $file = $self->blob_file($digest);
        my @h = (@api, 'Content-Type' => 'application/octet-stream',
                 'Docker-Content-Digest' => $digest);
        return [ 200, \@h, { file => $file } ] if defined $file;
        return [ 200, \@h, $self->{blobs}{$digest} ]
            if defined $self->{blobs}{$digest};
        return error(404, 'BLOB_UNKNOWN');
    }

    return error(404, 'NAME_UNKNOWN');
}


# the file of a digest in blob_dirs, or undef
sub blob_file {
    my ($self, $digest) = @_;
    my ($alg, $hex) = $digest =~ /^(sha256|sha512):([0-9a-f]+)$/ or return;
    for my $d (@{ $self->{blob_dirs} }) {
        return "$d/$alg/$hex" if -f "$d/$alg/$hex";
    }
    return;
}


# the bytes of a digest (file or in-memory blob), or undef
sub content {
    my ($self, $digest) = @_;
    return $self->{blobs}{$digest} if defined $self->{blobs}{$digest};
    my $f = $self->blob_file($digest) // return;
    open my $fh, '<:raw', $f or return;
    local $/;
    return scalar <$fh>;
}


sub error {
    my ($status, $code) = @_;
    return [ $status, [ 'Content-Type' => 'application/json',
                        'Docker-Distribution-API-Version' => 'registry/2.0' ],
             $JSON->encode({ errors => [ { code => $code, message => lc $code,
                                          detail => undef } ] }) ];
}


1;
