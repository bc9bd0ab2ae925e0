package PT::Images;

# Deterministic test images for the data-plane tests, built as OCI image
# layouts on disk and pushed to a registry (PT::Registry) with skopeo.
#
#   my $reg = PT::Registry->new->start;
#   my $img = PT::Images::seed($reg, qw(hello app multi));
#   $img->{'library/hello:1.0'}{digest};      # sha256:... as served
#   $img->{'team/app:1.0'}{media_type};       # Docker v2 schema 2
#   $img->{'library/multi:latest'}{children}{'linux/arm64'}{layers};
#   PT::Images::retag($reg, 'library/hello:1.0', 'library/hello:latest');
#   PT::Images::delete_manifest($reg, 'library/hello:1.0');
#
# seed() and read_back() make requests to the registry: call
# $reg->reset_requests before counting a client's requests.
#
# build() runs openssl (the layers' bytes), seed() and retag() skopeo too,
# and an https registry is read with curl: tests run
# PT::Util::need_tools with those first.
#
# Sets (each one OCI layout, pushed to the tags listed in %SETS):
#
#   hello   library/hello:1.0, :1.1, :latest (= 1.1)          OCI manifests
#           1.0 = [hello-a 5 KiB, hello-b 3 MiB], 1.1 = [hello-a, hello-c];
#           the two share the layer hello-a
#   app     team/app:1.0, :1.1, :latest (= 1.1)          Docker v2 schema 2
#           converted by skopeo --format v2s2, which gzips the layers
#   multi   library/multi:1.0, :latest (= 1.0)     OCI index, linux/amd64 +
#           linux/arm64, both sharing the layer multi-base (1 MiB);
#           team/multi:1.0, :latest (= 1.0)    the same as a Docker manifest
#           list of v2s2 manifests (skopeo --all --format v2s2)
#   big     library/big:1.0, :latest (= 1.0)   one layer of 100 MiB + 2 KiB
#   fleet   fleet/svc-0:1.0 ... fleet/svc-9:1.0       ten OCI images, 450 KiB
#           in all, sharing layers as images built FROM common bases do:
#           every one has fleet-os (256 KiB), svc-0 to svc-4 fleet-runtime
#           and svc-5 to svc-9 fleet-tools (64 KiB each), and each a small
#           layer of its own (fleet-app-N): 13 layers and 10 configs, 23
#           distinct blobs for 30 layer references
#
# Layers are uncompressed tars (application/vnd.oci.image.layer.v1.tar)
# holding one file of incompressible bytes (AES-256-CTR of zeros, keyed by
# the layer's name). OCI images are pushed with --preserve-digests: the
# registry serves exactly the bytes built here.
#
# Layouts are cached in $TMPDIR/pt-images-UID/SET-HASH (HASH covers the set's
# spec and $FORMAT), built in a temporary directory next to it and renamed
# into place, so parallel test files share them without clashing. Set
# PT_IMAGES_DIR to use another cache directory.

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock);
use Digest::SHA qw(sha256_hex);
use File::Basename ();
use File::Path qw(remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time);
use PT::Util qw(slurp spew run_output);

our $FORMAT = 1;        # bump when the way images are built changes

my $KiB = 1024;
my $MiB = 1024 * 1024;

# layer name => size of the one file the layer's tar holds
our %LAYERS = (
    'hello-a'     => 5 * $KiB + 7,
    'hello-b'     => 3 * $MiB + 100,
    'hello-c'     => 9 * $KiB,
    'app-a'       => 3 * $KiB + 1,
    'app-b'       => 2 * $MiB + 55,
    'app-c'       => 6 * $KiB + 11,
    'multi-base'  => 1 * $MiB,
    'multi-amd64' => 4 * $KiB + 3,
    'multi-arm64' => 4 * $KiB + 5,
    'big-data'    => 100 * $MiB,
    'big-small'   => 2 * $KiB,
    'fleet-os'      => 256 * $KiB,
    'fleet-runtime' => 64 * $KiB + 3,
    'fleet-tools'   => 64 * $KiB + 5,
    (map { ("fleet-app-$_" => 4 * $KiB + 97 * $_) } 0 .. 9),
);

# images: name => { layers => [...], arch => 'amd64' (default) }
# indexes: name => [ image names ]
# push: [ source (image or index name) => 'repo:tag', format ], in order;
#   format: 'oci' (as built, --preserve-digests), 'v2s2' (skopeo converts),
#   'alias' (the manifest of the tag named in source, see retag)
our %SETS = (
    hello => {
        images => {
            'hello-1.0' => { layers => [qw(hello-a hello-b)] },
            'hello-1.1' => { layers => [qw(hello-a hello-c)] },
        },
        push => [
            [ 'hello-1.0' => 'library/hello:1.0', 'oci' ],
            [ 'hello-1.1' => 'library/hello:1.1', 'oci' ],
            [ 'library/hello:1.1' => 'library/hello:latest', 'alias' ],
        ],
    },
    app => {
        images => {
            'app-1.0' => { layers => [qw(app-a app-b)] },
            'app-1.1' => { layers => [qw(app-a app-c)] },
        },
        push => [
            [ 'app-1.0' => 'team/app:1.0', 'v2s2' ],
            [ 'app-1.1' => 'team/app:1.1', 'v2s2' ],
            [ 'team/app:1.1' => 'team/app:latest', 'alias' ],
        ],
    },
    multi => {
        images => {
            'multi-amd64' => { arch => 'amd64',
                               layers => [qw(multi-base multi-amd64)] },
            'multi-arm64' => { arch => 'arm64',
                               layers => [qw(multi-base multi-arm64)] },
        },
        indexes => {
            'multi' => [qw(multi-amd64 multi-arm64)],
        },
        push => [
            [ 'multi' => 'library/multi:1.0', 'oci' ],
            [ 'library/multi:1.0' => 'library/multi:latest', 'alias' ],
            [ 'multi' => 'team/multi:1.0', 'v2s2' ],
            [ 'team/multi:1.0' => 'team/multi:latest', 'alias' ],
        ],
    },
    big => {
        images => {
            'big-1.0' => { layers => [qw(big-data big-small)] },
        },
        push => [
            [ 'big-1.0' => 'library/big:1.0', 'oci' ],
            [ 'library/big:1.0' => 'library/big:latest', 'alias' ],
        ],
    },
    fleet => {
        images => { map {
            ("fleet-$_" => { layers => [ 'fleet-os',
                                         $_ < 5 ? 'fleet-runtime'
                                                : 'fleet-tools',
                                         "fleet-app-$_" ] })
        } 0 .. 9 },
        push => [ map { [ "fleet-$_" => "fleet/svc-$_:1.0", 'oci' ] } 0 .. 9 ],
    },
);

our %MT = (
    oci_manifest => 'application/vnd.oci.image.manifest.v1+json',
    oci_index    => 'application/vnd.oci.image.index.v1+json',
    oci_config   => 'application/vnd.oci.image.config.v1+json',
    oci_layer    => 'application/vnd.oci.image.layer.v1.tar',
    oci_layer_gz => 'application/vnd.oci.image.layer.v1.tar+gzip',
    v2s2         => 'application/vnd.docker.distribution.manifest.v2+json',
    v2_list      => 'application/vnd.docker.distribution.manifest.list.v2+json',
    v2_config    => 'application/vnd.docker.container.image.v1+json',
    v2_layer_gz  => 'application/vnd.docker.image.rootfs.diff.tar.gzip',
    v2s1_signed  => 'application/vnd.docker.distribution.manifest.v1+prettyjws',
);

# what a client that understands everything but schema 1 sends
our $ACCEPT = join ', ', @MT{qw(oci_manifest oci_index v2s2 v2_list)};

my $JSON = JSON::PP->new->utf8->canonical;
my $CREATED = '2024-01-01T00:00:00Z';
my $REF_ANNOTATION = 'org.opencontainers.image.ref.name';


sub sets { sort keys %SETS }


# the tags a set pushes, in order: ('library/hello:1.0', ...)
sub tags {
    my (@sets) = @_;
    return map { my $s = $_; map { $_->[1] } @{ $SETS{$s}{push} } } @sets;
}


# cache directory of the layouts
sub cache_dir {
    my $dir = $ENV{PT_IMAGES_DIR}
        || File::Spec->catdir(File::Spec->tmpdir, "pt-images-$<");
    unless (-d $dir) {
        mkdir $dir, 0700 or -d $dir or croak "mkdir $dir: $!";
    }
    return $dir;
}


sub _spec_hash {
    my ($set) = @_;
    my $spec = $SETS{$set} or croak "PT::Images: unknown set '$set'";
    my %layers;
    for my $img (values %{ $spec->{images} }) {
        $layers{$_} = $LAYERS{$_} for @{ $img->{layers} };
    }
    return substr(sha256_hex($JSON->encode(
        [ $FORMAT, $set, $spec->{images}, $spec->{indexes} || {},
          \%layers ])), 0, 16);
}


# build($set) -> { set, dir (the OCI layout), refs => { NAME => {
#     digest, size, media_type, config, layers => [digests],
#     layer_sizes => [...], diff_ids => [...], arch,
#     (index:) manifests => [ image names ] } }, layers => { NAME => {
#     digest, size, content_size } }, seconds (0 when cached) }
# Builds the set's OCI layout unless cached; dies on error.
sub build {
    my ($set) = @_;

    my $dir = File::Spec->catdir(cache_dir(), "$set-" . _spec_hash($set));
    my $meta_file = "$dir/pt-images.json";

    return _cached($dir) if -f $meta_file;

    # one builder per set at a time: the others wait, then reuse its work
    my $base = File::Basename::basename($dir);
    open my $lock, '>>', cache_dir() . "/.lock-$base"
        or croak "lock for $base: $!";
    flock($lock, LOCK_EX) or croak "flock: $!";
    return _cached($dir) if -f $meta_file;

    # what a builder that was killed left behind
    remove_tree($_) for glob(cache_dir() . "/.build-$base-*");

    my $t0 = time;
    my $tmp = tempdir(".build-$base-XXXXXXXX", DIR => cache_dir());
    my $meta = eval { _build_layout($set, $tmp) };
    if (my $err = $@) {
        remove_tree($tmp);
        die $err;
    }

    spew("$tmp/pt-images.json", $JSON->encode($meta));

    # atomic publication; another process may have won the race
    unless (rename $tmp, $dir) {
        my $err = $!;
        remove_tree($tmp);
        croak "rename $tmp -> $dir: $err" unless -f $meta_file;
    }

    # layouts of this set built by an older spec or $FORMAT
    for my $old (glob(cache_dir() . "/$set-*")) {
        my $name = File::Basename::basename($old);
        next unless $name =~ /^\Q$set\E-[0-9a-f]{16}$/ && $name ne $base;
        remove_tree($old);
        unlink cache_dir() . "/.lock-$name";
    }

    $meta->{dir} = $dir;
    $meta->{seconds} = time - $t0;
    return $meta;
}


sub _cached {
    my ($dir) = @_;
    my $meta = $JSON->decode(slurp("$dir/pt-images.json"));
    $meta->{dir} = $dir;
    $meta->{seconds} = 0;
    return $meta;
}


sub _build_layout {
    my ($set, $dir) = @_;

    my $spec = $SETS{$set};
    mkdir "$dir/blobs";
    mkdir "$dir/blobs/sha256";
    spew("$dir/oci-layout", qq({"imageLayoutVersion":"1.0.0"}));

    my (%layers, %refs, @index);

    for my $name (sort keys %{ $spec->{images} }) {
        my $img = $spec->{images}{$name};
        my $arch = $img->{arch} || 'amd64';

        for my $l (@{ $img->{layers} }) {
            $layers{$l} ||= _write_layer($dir, $l, $LAYERS{$l});
        }
        my @l = map { $layers{$_} } @{ $img->{layers} };

        my $config = $JSON->encode({
            architecture => $arch,
            os => 'linux',
            created => $CREATED,
            config => {},
            rootfs => { type => 'layers',
                        diff_ids => [ map { $_->{digest} } @l ] },
            history => [ map { { created => $CREATED,
                                 created_by => "pt-images layer $_" } }
                         @{ $img->{layers} } ],
        });
        my $cd = _write_blob($dir, $config);

        my $manifest = $JSON->encode({
            schemaVersion => 2,
            mediaType => $MT{oci_manifest},
            config => { mediaType => $MT{oci_config},
                        digest => $cd, size => length $config },
            layers => [ map { { mediaType => $MT{oci_layer},
                                digest => $_->{digest},
                                size => $_->{size} } } @l ],
            annotations => { 'org.opencontainers.image.title' => $name },
        });
        my $md = _write_blob($dir, $manifest);

        $refs{$name} = {
            digest => $md,
            size => length $manifest,
            media_type => $MT{oci_manifest},
            config => $cd,
            config_size => length $config,
            layers => [ map { $_->{digest} } @l ],
            layer_sizes => [ map { $_->{size} } @l ],
            diff_ids => [ map { $_->{digest} } @l ],
            arch => $arch,
            os => 'linux',
        };
        push @index, { mediaType => $MT{oci_manifest}, digest => $md,
                       size => length $manifest,
                       annotations => { $REF_ANNOTATION => $name } };
    }

    for my $name (sort keys %{ $spec->{indexes} || {} }) {
        my @m = map { $refs{$_} or croak "no image $_" }
            @{ $spec->{indexes}{$name} };
        my $index = $JSON->encode({
            schemaVersion => 2,
            mediaType => $MT{oci_index},
            manifests => [ map { { mediaType => $_->{media_type},
                                   digest => $_->{digest},
                                   size => $_->{size},
                                   platform => { architecture => $_->{arch},
                                                 os => $_->{os} } } } @m ],
        });
        my $id = _write_blob($dir, $index);
        $refs{$name} = {
            digest => $id,
            size => length $index,
            media_type => $MT{oci_index},
            manifests => [ @{ $spec->{indexes}{$name} } ],
        };
        push @index, { mediaType => $MT{oci_index}, digest => $id,
                       size => length $index,
                       annotations => { $REF_ANNOTATION => $name } };
    }

    spew("$dir/index.json",
         $JSON->encode({ schemaVersion => 2, manifests => \@index }));

    return { set => $set, refs => \%refs, layers => \%layers };
}


sub _write_blob {
    my ($dir, $bytes) = @_;
    my $hex = sha256_hex($bytes);
    spew("$dir/blobs/sha256/$hex", $bytes);
    return "sha256:$hex";
}


# a ustar header for one regular file
sub _tar_header {
    my ($name, $size) = @_;

    croak "tar name too long" if length $name > 99;

    my $h = pack('a100 a8 a8 a8 a12 a12 A8 a1 a100 a6 a2 a32 a32 a8 a8 a155 a12',
        $name,
        sprintf('%07o', 0644),
        sprintf('%07o', 0),
        sprintf('%07o', 0),
        sprintf('%011o', $size),
        sprintf('%011o', 0),            # mtime: the epoch
        '',                             # checksum: spaces while summing
        '0',                            # regular file
        '',
        "ustar\0", '00',
        'root', 'root',
        sprintf('%07o', 0), sprintf('%07o', 0),
        '', '');

    my $sum = unpack('%32C*', $h);
    substr($h, 148, 8) = sprintf('%06o', $sum) . "\0 ";

    return $h;
}


# writes the layer blob (an uncompressed tar of one file of $size
# pseudo-random bytes) and returns { digest, size, content_size }
sub _write_layer {
    my ($dir, $name, $size) = @_;

    my $key = sha256_hex("pt-images key $name");
    my $iv = substr(sha256_hex("pt-images iv $name"), 0, 32);

    my $tmp = "$dir/layer-$name.tmp";
    open my $out, '>:raw', $tmp or die "$tmp: $!";
    my $sha = Digest::SHA->new(256);
    my $n = 0;

    my $put = sub {
        my ($data) = @_;
        print $out $data or die "write $tmp: $!";
        $sha->add($data);
        $n += length $data;
    };

    $put->(_tar_header("pt/$name.bin", $size));

    # hex key and iv, a number: nothing for the shell to interpret
    open my $in, '-|',
        "openssl enc -aes-256-ctr -nosalt -K $key -iv $iv -in /dev/zero"
        . " 2>/dev/null | head -c $size"
        or die "openssl: $!";
    binmode $in;
    my $got = 0;
    while (1) {
        my $r = read($in, my $buf, 4 * $MiB);
        die "read openssl: $!" unless defined $r;
        last if $r == 0;
        $put->($buf);
        $got += $r;
    }
    close $in;
    die "openssl gave $got bytes of $size for layer $name\n"
        unless $got == $size;

    my $pad = (512 - $size % 512) % 512;
    $put->("\0" x ($pad + 1024));       # padding, then two zero blocks

    close $out or die "close $tmp: $!";

    my $digest = 'sha256:' . $sha->hexdigest;
    my $final = "$dir/blobs/sha256/" . substr($digest, 7);
    rename $tmp, $final or die "rename $tmp: $!";

    return { digest => $digest, size => $n, content_size => $size };
}


# the sha256 digest of a file, streaming
sub file_digest {
    my ($file) = @_;
    return 'sha256:' . Digest::SHA->new(256)->addfile($file, 'b')->hexdigest;
}


# registry access: a PT::Registry, or 'host:port' / 'http://host:port'

sub _reg {
    my ($reg) = @_;

    if (ref $reg && eval { $reg->can('host') }) {
        return {
            host => $reg->host,
            scheme => ($reg->can('scheme') ? $reg->scheme : 'http'),
            creds => ($reg->can('creds') ? $reg->creds : undef),
        };
    }

    croak "PT::Images: registry must be a PT::Registry or host:port"
        unless defined $reg && !ref $reg
            && $reg =~ m{^(?:(https?)://)?([^/]+)/?$};
    return { host => $2, scheme => $1 || 'http', creds => undef };
}


# runs skopeo copy; dies with its output on failure
sub skopeo_copy {
    my ($src, $dst, @opt) = @_;

    my @cmd = ('skopeo', '--insecure-policy', 'copy', '--quiet',
               '--retry-times', '2', @opt, $src, $dst);
    my $out = run_output(@cmd);
    die "@cmd failed:\n$out" if $?;
    return $out;
}


sub _docker_opts {
    my ($r, $dir) = @_;      # $dir: 'src' or 'dest'
    my @o = ("--$dir-tls-verify=false");
    push @o, "--$dir-creds", $r->{creds} if defined $r->{creds};
    return @o;
}


# seed($registry, @sets) -> { 'repo:tag' => info, ... } for every tag the
# sets push (all sets when @sets is empty); see read_back for info
sub seed {
    my ($reg, @sets) = @_;

    @sets = sets() unless @sets;
    my $r = _reg($reg);
    my %out;

    for my $set (@sets) {
        my $meta = build($set);

        for my $p (@{ $SETS{$set}{push} }) {
            my ($from, $to, $format) = @$p;
            my $dst = "docker://$r->{host}/$to";

            if ($format eq 'alias') {
                retag($reg, $from, $to);
            }
            else {
                my $ref = $meta->{refs}{$from} or croak "no ref $from";
                my $src = "oci:$meta->{dir}:$from";
                my @o = _docker_opts($r, 'dest');
                push @o, '--all' if $ref->{media_type} eq $MT{oci_index};
                push @o, $format eq 'oci' ? '--preserve-digests'
                       : $format eq 'v2s2' ? ('--format', 'v2s2')
                       : croak "unknown format $format";
                skopeo_copy($src, $dst, @o);
            }

            my $info = read_back($reg, $to);
            if ($format eq 'alias') {
                $info->{source} = $out{$from}{source};
                $info->{format} = $out{$from}{format};
                $info->{alias_of} = $from;
            }
            else {
                $info->{source} = $meta->{refs}{$from};
                $info->{format} = $format;
            }
            $out{$to} = $info;
        }
    }

    return \%out;
}


# read_back($registry, 'repo:tag' or 'repo@digest')
#   -> { repo, tag, digest (Docker-Content-Digest), media_type
#        (Content-Type), size, raw (the manifest's bytes), manifest (decoded),
#   for an image manifest:
#        config, config_size, config_media_type, layers => [digests],
#        layer_sizes => [...], layer_media_types => [...],
#        diff_ids => [...], platform => 'os/arch' (from the config blob),
#   for an index or manifest list:
#        children => { 'os/arch' => { digest, media_type, size, config,
#                      layers, ... (as above) } } }
# Dies unless the registry answers 200 with a body matching the digest.
sub read_back {
    my ($reg, $ref) = @_;

    my ($repo, $tag) = _split_ref($ref);
    my $sep = $ref =~ /\@/ ? '@' : ':';

    my $res = registry_get($reg, "/v2/$repo/manifests/$tag",
                           Accept => $ACCEPT);
    die "GET manifest $ref: $res->{status} $res->{content}\n"
        unless $res->{status} == 200;

    my $raw = $res->{content};
    my $digest = $res->{headers}{'docker-content-digest'} // '';
    my $calc = 'sha256:' . sha256_hex($raw);
    die "manifest $ref: Docker-Content-Digest $digest, body $calc\n"
        unless $digest eq $calc;

    my $m = $JSON->decode($raw);
    my $mt = $res->{headers}{'content-type'};
    my %info = (
        repo => $repo,
        ($sep eq ':' ? (tag => $tag) : ()),
        digest => $digest,
        media_type => $mt,
        size => length $raw,
        raw => $raw,
        manifest => $m,
    );

    if ($m->{manifests}) {
        for my $d (@{ $m->{manifests} }) {
            my $p = $d->{platform} || {};
            my $key = join '/', grep { defined } @$p{qw(os architecture variant)};
            $info{children}{$key} = read_back($reg, "$repo\@$d->{digest}");
        }
        return \%info;
    }

    my $c = $m->{config};
    my $cres = registry_get($reg, "/v2/$repo/blobs/$c->{digest}");
    die "GET config $c->{digest} of $ref: $cres->{status}\n"
        unless $cres->{status} == 200;
    die "config of $ref does not match its digest\n"
        unless 'sha256:' . sha256_hex($cres->{content}) eq $c->{digest};
    my $config = $JSON->decode($cres->{content});

    %info = (%info,
        config => $c->{digest},
        config_size => $c->{size},
        config_media_type => $c->{mediaType},
        layers => [ map { $_->{digest} } @{ $m->{layers} } ],
        layer_sizes => [ map { $_->{size} } @{ $m->{layers} } ],
        layer_media_types => [ map { $_->{mediaType} } @{ $m->{layers} } ],
        diff_ids => $config->{rootfs}{diff_ids},
        platform => "$config->{os}/$config->{architecture}",
    );

    return \%info;
}


# retag($registry, 'repo:tag' or 'repo@digest', 'repo:newtag') -> digest
# points newtag at the manifest of the first reference (GET, then PUT of the
# same bytes: the digest does not change). Within one repository the
# manifest is simply PUT; across repositories skopeo copies the blobs too.
sub retag {
    my ($reg, $from, $to) = @_;

    my ($frepo) = _split_ref($from);
    my ($trepo, $ttag) = _split_ref($to);

    if ($frepo ne $trepo) {
        my $r = _reg($reg);
        skopeo_copy("docker://$r->{host}/$from", "docker://$r->{host}/$to",
                    '--all', '--preserve-digests',
                    _docker_opts($r, 'src'), _docker_opts($r, 'dest'));
        return read_back($reg, $to)->{digest};
    }

    my ($repo, $ref) = _split_ref($from);
    my $res = registry_request($reg, 'GET', "/v2/$repo/manifests/$ref",
                               headers => { Accept => $ACCEPT });
    die "retag: GET $from: $res->{status} $res->{content}\n"
        unless $res->{status} == 200;

    my $put = registry_request($reg, 'PUT', "/v2/$trepo/manifests/$ttag",
        headers => { 'Content-Type' => $res->{headers}{'content-type'} },
        content => $res->{content});
    die "retag: PUT $to: $put->{status} $put->{content}\n"
        unless $put->{status} == 201;

    return $put->{headers}{'docker-content-digest'};
}


# delete_manifest($registry, 'repo:tag' or 'repo@digest') -> digest
# deletes the manifest (and so every tag pointing at it: distribution 2.8
# cannot delete a tag alone); its blobs stay until garbage collection
sub delete_manifest {
    my ($reg, $ref) = @_;

    my ($repo, $r) = _split_ref($ref);
    my $digest = $r =~ /^sha256:/ ? $r : read_back($reg, $ref)->{digest};

    my $res = registry_request($reg, 'DELETE', "/v2/$repo/manifests/$digest");
    die "delete $ref: $res->{status} $res->{content}\n"
        unless $res->{status} == 202;
    return $digest;
}


# 'repo:tag' or 'repo@digest' -> (repo, tag or digest)
sub _split_ref {
    my ($ref) = @_;
    my ($repo, $r) = $ref =~ /\@/ ? $ref =~ /^([^@]+)\@(.+)$/
                                  : $ref =~ /^(.+):([^:\/]+)$/;
    croak "bad reference '$ref' (repo:tag or repo\@digest)"
        unless defined $r;
    return ($repo, $r);
}


# registry_get($registry, $path, HEADER => VALUE, ...)
sub registry_get {
    my ($reg, $path, %headers) = @_;
    return registry_request($reg, 'GET', $path, headers => \%headers);
}


# registry_request($registry, METHOD, $path, headers => {...},
#                  content => BYTES)
#   -> { status, headers (lowercase names), content }
# with the registry's credentials; http through HTTP::Tiny, https through
# curl (HTTP::Tiny needs IO::Socket::SSL for https, not a core module)
sub registry_request {
    my ($reg, $method, $path, %opt) = @_;

    my $r = _reg($reg);
    my $url = "$r->{scheme}://$r->{host}$path";
    my %headers = %{ $opt{headers} || {} };
    if (defined $r->{creds}) {
        $headers{Authorization} = 'Basic ' . encode_base64($r->{creds}, '');
    }

    if ($r->{scheme} eq 'http') {
        return HTTP::Tiny->new(timeout => 60)->request($method, $url,
            { headers => \%headers,
              (defined $opt{content} ? (content => $opt{content}) : ()) });
    }

    my $tmp = tempdir('pt-curl-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @body;
    if (defined $opt{content}) {
        spew("$tmp/req", $opt{content});
        @body = ('--data-binary', "\@$tmp/req");
    }
    my $out = run_output(
        'curl', '-sk', '-m', '60', '-X', $method,
        ($method eq 'HEAD' ? ('-I') : ()),
        '-D', "$tmp/h", '-o', "$tmp/b", @body,
        (map { ('-H', "$_: $headers{$_}") } sort keys %headers),
        $url);
    die "curl $url: $out" if $?;
    my @blocks = split /\r?\n\r?\n/, slurp("$tmp/h");
    my ($status_line, @lines) = split /\r?\n/, $blocks[-1] // '';
    my ($status) = ($status_line // '') =~ m{^HTTP/\S+ (\d+)};
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = $v;
    }
    my $content = slurp("$tmp/b");
    remove_tree($tmp);
    return { status => $status || 599, headers => \%h, content => $content };
}


1;
